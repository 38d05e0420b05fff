"""Abuse and security: headers on every response, the rate limit, CORS, request ids, path traversal, the banner."""

from __future__ import annotations

import http.client
import json
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from qa.app import create_app

ROOT = Path(__file__).resolve().parents[1]

EVERY_KIND_OF_RESPONSE = [
    ("get", "/"), ("get", "/?q=Nile"), ("get", "/?q="), ("get", "/documents"), ("get", "/documents/rivers"),
    ("get", "/no/such/page"), ("get", "/static/style.css"), ("get", "/static/missing.css"),
    ("get", "/api/search?q=Nile"), ("get", "/api/search?q="), ("post", "/api/search"), ("delete", "/api/search"),
    ("get", "/api/documents"), ("get", "/api/documents/nope"), ("get", "/api/health"), ("get", "/api/openapi.json"),
    ("options", "/api/search"), ("head", "/"),
]


def assert_security_headers(headers) -> None:
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("method,path", EVERY_KIND_OF_RESPONSE)
def test_security_headers_on_every_response(client, method, path):
    assert_security_headers(getattr(client, method)(path).headers)


def test_security_headers_on_a_500(client, monkeypatch):
    from qa.search import Searcher

    monkeypatch.setattr(Searcher, "search", lambda *a, **k: 1 / 0)
    response = client.get("/api/search?q=Nile")
    assert response.status_code == 500
    assert_security_headers(response.headers)


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)|\son[a-z]+\s*=|javascript:", re.IGNORECASE)


@pytest.mark.parametrize("path", ["/", "/?q=Nile", "/documents", "/documents/rivers?q=Nile", "/nope"])
def test_pages_run_under_the_policy_no_inline_script(client, path):
    assert not INLINE_SCRIPT.search(client.get(path).get_data(as_text=True))


# ---------------------------------------------------------------- request ids


@pytest.mark.parametrize("given,kept", [("req-42.a_B", True), ("x" * 64, True), ("x" * 65, False),
                                        ("has space", False), ("a\u2028b", False), ("id\x00", False), ("", False)])
def test_a_client_request_id_is_echoed_only_when_harmless(client, given, kept):
    echoed = client.get("/api/health", headers={"X-Request-Id": given}).headers["X-Request-Id"]
    assert (echoed == given) == kept
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", echoed)


# ---------------------------------------------------------------- rate limit


@pytest.fixture
def limited_app(tiny_index, fake_embedder, monkeypatch):
    """An app allowing 3 requests a minute per client, on a clock held still in the middle of a minute.

    The limiter counts in one-minute windows, the previous window's count weighted by how much of it is still in
    the last minute (sliding-window-counter): requests that straddle a window's end count for less, so on a busy
    machine a fourth request could slip through. With the clock still, every request falls in one window.
    """
    now = (time.time() // 60) * 60 + 30
    monkeypatch.setattr(time, "time", lambda: now)
    return create_app({"TESTING": True, "INDEX": str(tiny_index), "EMBEDDER": fake_embedder,
                       "RATE_LIMIT": "3/minute"})


def from_address(client, address: str, path: str = "/api/search?q=Nile"):
    return client.get(path, environ_base={"REMOTE_ADDR": address})


def test_over_the_limit_is_429_with_retry_after_per_client(limited_app):
    client = limited_app.test_client()
    assert [from_address(client, "10.0.0.1").status_code for _ in range(3)] == [200] * 3
    refused = from_address(client, "10.0.0.1")
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert from_address(client, "10.0.0.2").status_code == 200  # another client has its own allowance


def test_the_limit_covers_pages_but_not_health_or_the_spec(limited_app):
    client = limited_app.test_client()
    for _ in range(3):
        from_address(client, "10.0.0.3")
    page = from_address(client, "10.0.0.3", "/?q=Nile")
    assert page.status_code == 429 and page.mimetype == "text/html" and "Retry-After" in page.headers
    for path in ("/api/health", "/api/openapi.json", "/static/style.css"):
        assert from_address(client, "10.0.0.3", path).status_code == 200


def test_no_limit_by_default(client):
    assert {client.get("/api/search?q=Nile").status_code for _ in range(200)} == {200}


# ---------------------------------------------------------------- CORS

ORIGIN = "https://reader.example"


def cors_app(tiny_index, fake_embedder, origins: str):
    return create_app({"TESTING": True, "INDEX": str(tiny_index), "EMBEDDER": fake_embedder,
                       "CORS_ORIGINS": origins}).test_client()


def test_no_origin_is_allowed_by_default(client):
    response = client.get("/api/search?q=Nile", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_configured_origin_may_call_the_api(tiny_index, fake_embedder):
    client = cors_app(tiny_index, fake_embedder, f"https://other.example, {ORIGIN}/")
    allowed = client.get("/api/search?q=Nile", headers={"Origin": ORIGIN})
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN and "Origin" in allowed.headers["Vary"]
    refused = client.get("/api/search?q=Nile", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in refused.headers and "Origin" in refused.headers["Vary"]
    page = client.get("/", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in page.headers  # the HTML pages are not an API


def test_a_preflight_is_answered_for_a_configured_origin(tiny_index, fake_embedder):
    client = cors_app(tiny_index, fake_embedder, ORIGIN)
    response = client.options("/api/search", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "content-type" in response.headers["Access-Control-Allow-Headers"].lower()  # names are case-insensitive


def test_star_allows_any_origin(tiny_index, fake_embedder):
    client = cors_app(tiny_index, fake_embedder, "*")
    assert client.get("/api/health", headers={"Origin": ORIGIN}).headers["Access-Control-Allow-Origin"] == "*"


# ---------------------------------------------------------------- path traversal

TRAVERSALS = [
    "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e/%2e%2e/etc/passwd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%252F..%252Fetc%252Fpasswd", "/etc/passwd", "%2Fetc%2Fpasswd", "....//....//etc/passwd",
    "..\\..\\etc\\passwd", "rivers/../../../../etc/passwd", "rivers.txt", "corpus/rivers.txt",
    "%00../../etc/passwd", "rivers%00.txt",
]


def planted_paths(tiny_corpus: Path) -> list[str]:
    """The corpus files themselves, by absolute and relative path: ids are keys of the index, not file names."""
    rivers = tiny_corpus / "rivers.txt"
    return [str(rivers), str(rivers).lstrip("/"), str(rivers.with_suffix(""))]


@pytest.mark.parametrize("prefix", ["/documents/", "/api/documents/"])
def test_documents_cannot_be_made_to_read_files(client, tiny_corpus, prefix):
    for doc_id in TRAVERSALS + planted_paths(tiny_corpus):
        response = client.get(prefix + doc_id, follow_redirects=True)
        body = response.get_data(as_text=True)
        assert response.status_code == 404, (doc_id, response.status_code)
        assert "root:" not in body and "The Nile is the longest river" not in body


@pytest.mark.parametrize("path", ["/static/../src/qa/app.py", "/static/%2e%2e/pyproject.toml",
                                  "/static/..%2F..%2Fpyproject.toml", "/static//etc/passwd"])
def test_static_files_stay_in_their_folder(client, path):
    response = client.get(path, follow_redirects=True)
    assert response.status_code == 404 and b"create_app" not in response.data


def raw_get(base: str, path: str) -> http.client.HTTPResponse:
    """A request line sent exactly as written: no client-side normalisation of `..` or `%2e`."""
    address = urlsplit(base)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    connection.putrequest("GET", path, skip_accept_encoding=True)
    connection.endheaders()
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


@pytest.mark.server
@pytest.mark.model
def test_the_real_server_reports_its_exact_query_encoder(live_server):
    assert json.loads(raw_get(live_server, "/api/health").body)["query_encoder"] == "exact"


@pytest.mark.server
@pytest.mark.model
def test_traversal_against_the_real_server(live_server):
    for prefix in ("/documents/", "/api/documents/", "/static/"):
        for doc_id in TRAVERSALS:
            response = raw_get(live_server, prefix + doc_id)
            if response.status == 308:  # `//` merged into `/`, on this same server
                location = urlsplit(response.getheader("Location"))
                assert location.netloc in ("", urlsplit(live_server).netloc)
                response = raw_get(live_server, location.path)
            assert response.status in (400, 404), (prefix + doc_id, response.status)
            assert b"root:" not in response.body


# ---------------------------------------------------------------- the real server


@pytest.mark.server
@pytest.mark.model
@pytest.mark.parametrize("path", ["/api/health", "/", "/api/nope", "/static/style.css"])
def test_real_server_sends_no_banner_and_the_security_headers(live_server, path):
    response = raw_get(live_server, path)
    assert response.getheader("Server") == "qa"
    assert not re.search(r"gunicorn|werkzeug|python", str(response.headers), re.IGNORECASE)
    assert_security_headers(response.headers)


@pytest.mark.server
@pytest.mark.model
def test_real_server_takes_a_long_non_latin_question_in_the_url(live_server):
    response = raw_get(live_server, "/api/search?q=" + "%D0%96" * 1000)  # 1,000 Cyrillic letters: 6,000 bytes
    assert response.status == 200


# ---------------------------------------------------------------- dependencies


def test_every_dependency_is_pinned():
    pins = {line.split("==")[0].lower().replace("_", "-") for line in (ROOT / "constraints.txt").read_text()
            .splitlines() if "==" in line}
    pyproject = (ROOT / "pyproject.toml").read_text()
    declared = re.findall(r'^\s*"([A-Za-z0-9_.-]+)[<>=!~\[]', pyproject, re.MULTILINE)
    assert declared and {d.lower().replace("_", "-") for d in declared} <= pins
