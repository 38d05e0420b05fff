"""The real server (`qa serve`: gunicorn) at its edges: errors it raises before the app, a prompt stop, a prompt reload.

Each test starts its own `qa serve` process over a small real index (the session's index copied, so its ONNX export
is reused and only the small corpus is embedded).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from conftest import TINY_TEXT
from qa.app import MAX_BODY_BYTES
from qa.server import MAX_REQUEST_LINE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import soak  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.model]

STOP_SECONDS = 2.0
RELOAD_SECONDS = 1.0
SEARCH = "/api/search?k=3&q=" + quote("Which river is the longest?")


@pytest.fixture(scope="module")
def small_index(real_paths, tmp_path_factory) -> tuple[Path, Path]:
    """(corpus, index): the tiny river document, indexed with the real model."""
    from qa.cli import run_build

    base = tmp_path_factory.mktemp("served")
    corpus, index = base / "corpus", base / "index"
    corpus.mkdir()
    (corpus / "rivers.txt").write_text(TINY_TEXT, encoding="utf-8")
    shutil.copytree(real_paths[1], index)  # the export is reused: only the tiny document is embedded
    run_build(str(corpus), str(index))
    return corpus, index


@pytest.fixture
def server(small_index, tmp_path):
    corpus, index = small_index
    started = soak.Server(corpus, index, workers=2, log=tmp_path / "serve.log").start()
    yield started
    started.stop()


def raw_exchange(base: str, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send `request` exactly as given on a fresh connection; (status, headers, body) of the answer."""
    address = urlsplit(base)
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def assert_json_error(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> str:
    got_status, headers, body = answer
    assert got_status == status, body
    assert headers["content-type"] == "application/json" and headers["x-content-type-options"] == "nosniff"
    assert headers["x-request-id"]
    error = json.loads(body)["error"]
    assert error["code"] == code
    return error["message"]


# ---------------------------------------------------------------- errors gunicorn raises before the app


def test_what_the_http_server_refuses_is_a_json_error_naming_the_limit(server):
    long_line = b"GET /api/search?q=" + b"a" * MAX_REQUEST_LINE + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    message = assert_json_error(raw_exchange(server.base, long_line), 414, "uri_too_long")
    assert f"{MAX_REQUEST_LINE:,} bytes" in message and "POST" in message
    long_header = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n"
    message = assert_json_error(raw_exchange(server.base, long_header), 431, "headers_too_large")
    assert "8,190 bytes" in message
    many_headers = b"GET /api/health HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n"
    assert "at most 100 headers" in assert_json_error(raw_exchange(server.base, many_headers), 431,
                                                      "headers_too_large")
    assert_json_error(raw_exchange(server.base, b"NOT HTTP AT ALL\r\n\r\n"), 400, "bad_request")


def test_the_body_limit_and_a_missing_q_read_the_same_over_the_real_server(server):
    body = json.dumps({"q": "Nile", "pad": "x" * MAX_BODY_BYTES}).encode()
    post = (b"POST /api/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body
    assert f"{MAX_BODY_BYTES:,} bytes" in assert_json_error(raw_exchange(server.base, post), 413, "payload_too_large")
    get = b"GET /api/search?k=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    no_q = b'{"k": 3}'
    post = (b"POST /api/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(no_q)) + no_q
    messages = {assert_json_error(raw_exchange(server.base, r), 400, "invalid_parameter") for r in (get, post)}
    assert messages == {"q is required"}


# ---------------------------------------------------------------- a clean stop


def open_connections(base: str) -> list[socket.socket]:
    """What a browser leaves open: a kept-alive connection after a search, and a preconnected one, silent."""
    address = urlsplit(base)
    kept = socket.create_connection((address.hostname, address.port))
    kept.sendall(f"GET {SEARCH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert kept.recv(65536).startswith(b"HTTP/1.1 200")
    silent = socket.create_connection((address.hostname, address.port))
    return [kept, silent]


def test_an_idle_server_stops_within_two_seconds_of_sigterm(server):
    connections = open_connections(server.base)
    time.sleep(0.5)
    began = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)
    took = time.monotonic() - began
    for c in connections:
        c.close()
    print(f"idle stop: {took:.2f} s after SIGTERM")
    assert server.process.returncode == 0 and took < STOP_SECONDS


def test_a_request_in_flight_at_sigterm_is_answered(server):
    body = json.dumps({"q": "Which river is the longest?", "k": 2}).encode()
    address = urlsplit(server.base)
    with socket.create_connection((address.hostname, address.port), timeout=30) as s:
        s.sendall(b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        time.sleep(0.5)  # the request is being read
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # the stop has begun; the client is still sending
        s.sendall(body[10:])
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert json.loads(data.partition(b"\r\n\r\n")[2])["results"]
    assert server.process.wait(timeout=30) == 0


# ---------------------------------------------------------------- a prompt reload


def test_a_new_build_is_served_within_a_second_without_any_request(server, small_index):
    """Before, a worker looked for a new build only when a request came, and answered that one from the old build."""
    from qa.cli import run_build

    corpus, index = small_index
    old = server.build_id()
    (corpus / "lakes.txt").write_text("Lakes\n\nLake Baikal is the deepest lake on Earth.\n", encoding="utf-8")
    try:
        run_build(str(corpus), str(index))  # the build is live when this returns
        time.sleep(RELOAD_SECONDS)  # no request meanwhile
        builds = [soak.get_json(server.base + "/api/health")[1]["index"]["build"] for _ in range(12)]
    finally:
        (corpus / "lakes.txt").unlink()
    assert old not in builds and len(set(builds)) == 1, builds  # every worker, on its first request


def test_the_master_imports_before_forking_without_starting_a_thread():
    """What gunicorn's master does before forking the workers must not start a thread (threads do not survive a
    fork) or open the index; it leaves the libraries every worker uses imported, to be shared."""
    import gc
    import threading

    from qa.server import import_before_fork

    before = threading.active_count()
    try:
        import_before_fork()
        assert threading.active_count() == before
        assert {"onnxruntime", "tokenizers", "faiss", "qa.app"} <= sys.modules.keys()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
