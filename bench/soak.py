#!/usr/bin/env python
"""Load, soak, burst and fault runs against the production server (`qa serve`: gunicorn), on loopback only.

Not part of the test suite (tests/test_lifecycle.py runs short versions with the helpers below). Phases:

1. benchmark: wrk, closed loop, for `--bench-seconds`: the throughput the server sustains.
2. soak: the same load for `--minutes`; `--rebuild-after` seconds in, the corpus changes and `qa build` runs while
   the server answers (zero failed requests expected); VmRSS of every worker sampled throughout.
3. burst: `--burst-connections` connections, far over capacity, against a second server started with
   `--rate-limit` (shed with 429) and against the first (queued); then normal answers from both.
4. kill: Python clients (a fresh connection per request) while one worker is SIGKILLed: only the requests in
   flight on it may fail; the master replaces it and the service keeps answering.

Usage: python bench/soak.py [--minutes 4] [--json artifacts/soak.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "eval" / "dev.jsonl"
OTHER_CLIENT = "127.0.0.2"  # still loopback: a second client address for the per-client rate limit

WRK_SCRIPT = r"""
local paths, threads, n = {}, {}, 0
for line in io.lines(os.getenv("SOAK_PATHS")) do table.insert(paths, line) end
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function request() n = n % #paths + 1; return wrk.format("GET", paths[n]) end
function response(status) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for status, count in pairs(t:get("statuses")) do total[tostring(status)] = (total[tostring(status)] or 0) + count end
  end
  local parts = {}
  for status, count in pairs(total) do table.insert(parts, string.format('"%s": %d', status, count)) end
  local e = summary.errors
  io.write(string.format('WRK {"requests": %d, "seconds": %.3f, "statuses": {%s}, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f}\n',
    summary.requests, summary.duration / 1e6, table.concat(parts, ", "), e.connect, e.read, e.write, e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
"""


# ---------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 10.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_healthy(base: str, seconds: float = 120.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            status, body = get_json(base + "/api/health", timeout=2)
            if status == 200:
                return body
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base} did not become healthy within {seconds} s")


@dataclass
class Server:
    """A `qa serve --no-build` process on a free loopback port."""

    corpus: Path
    index: Path
    workers: int = 2
    options: tuple[str, ...] = ()
    log: Path | None = None
    process: subprocess.Popen | None = None
    base: str = ""

    def start(self) -> Server:
        port = free_port()
        env = {**os.environ, "QA_CORPUS": str(self.corpus), "QA_INDEX": str(self.index)}
        stderr = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qa.cli", "serve", "--no-build", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(self.workers), *self.options], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        self.base = f"http://127.0.0.1:{port}"
        wait_healthy(self.base)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: the master's children."""
        pid = self.process.pid
        return sorted(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())

    def build_id(self) -> str:
        return get_json(self.base + "/api/health")[1]["index"]["build"]


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_for_replacement(server: Server, killed: int, workers: int, seconds: float = 120.0) -> float:
    """Seconds until the master has `workers` live workers again (none of them `killed`) and the service answers."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        pids = server.worker_pids()
        if killed not in pids and len(pids) == workers:
            wait_healthy(server.base)
            return time.monotonic() - began
        time.sleep(0.1)
    raise TimeoutError("the killed worker was not replaced")


# ---------------------------------------------------------------- load from Python threads


@dataclass
class Outcome:
    started: float
    ended: float
    status: int | None  # None: no HTTP response (the connection failed)
    answer: str = ""  # which index answered: its build time and the ranked (document, chunk) pairs
    error: str = ""


def answer_of(body: bytes) -> str:
    response = json.loads(body)
    return json.dumps([response["index"]["built_at"], [[r["document"], r["chunk"]] for r in response["results"]]])


def one_request(base: str, path: str, source: str = "") -> Outcome:
    """One GET on a fresh connection, so that a failure belongs to exactly this request.

    `source` is a loopback address to send from (127.0.0.2, say): another client, for the rate limit.
    """
    address = urlsplit(base)
    started = time.monotonic()
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60,
                                            source_address=(source, 0) if source else None)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        answer = answer_of(body) if response.status == 200 and path.startswith("/api/search") else ""
        return Outcome(started, time.monotonic(), response.status, answer)
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(started, time.monotonic(), None, error=type(exc).__name__)
    finally:
        connection.close()


@dataclass
class Load:
    """`clients` threads sending the paths in turn until stopped; every outcome is kept."""

    base: str
    paths: list[str]
    clients: int = 8
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)

    def _client(self, offset: int) -> None:
        i = offset
        while not self._stop.is_set():
            self.outcomes.append(one_request(self.base, self.paths[i % len(self.paths)]))
            i += 1


def search_paths(questions: Path = QUESTIONS, k: int = 5) -> list[str]:
    lines = [json.loads(line) for line in questions.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [f"/api/search?k={k}&q={quote(item['question'])}" for item in lines]


# ---------------------------------------------------------------- load from wrk


def wrk(base: str, paths: list[str], seconds: float, connections: int, threads: int = 2) -> dict:
    """A closed-loop wrk run over the paths; its summary with a count per status."""
    with tempfile.TemporaryDirectory() as folder:
        script, listing = Path(folder) / "soak.lua", Path(folder) / "paths.txt"
        script.write_text(WRK_SCRIPT)
        listing.write_text("\n".join(paths) + "\n")
        out = subprocess.run(
            ["wrk", "-t", str(min(threads, connections)), "-c", str(connections), "-d", f"{seconds:.0f}s",
             "--timeout", "30s", "-s", str(script), base], env={**os.environ, "SOAK_PATHS": str(listing)},
            capture_output=True, text=True, check=True).stdout
    summary = json.loads(next(line[4:] for line in out.splitlines() if line.startswith("WRK ")))
    summary["rps"] = round(summary["requests"] / summary["seconds"], 1)
    summary["socket_errors"] = sum(summary[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    summary["non_2xx"] = sum(n for status, n in summary["statuses"].items() if not status.startswith("2"))
    return summary


def normal_answers(base: str, paths: list[str], count: int = 20, source: str = "") -> int:
    """How many of `count` sequential searches got a 200."""
    return sum(one_request(base, paths[i % len(paths)], source).status == 200 for i in range(count))


# ---------------------------------------------------------------- phases


def qa_build(corpus: Path, index: Path) -> float:
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "qa.cli", "build", "--corpus", str(corpus), "--index", str(index)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return round(time.monotonic() - began, 1)


def change_corpus(corpus: Path) -> None:
    """Append a paragraph to every document, so the rebuild has new content and a new build id."""
    for path in sorted(corpus.rglob("*.txt")) + sorted(corpus.rglob("*.md")):
        with path.open("a", encoding="utf-8") as f:
            f.write("\n\nA paragraph added during the soak test, so that the index must be rebuilt.\n")


def rss(server: Server) -> dict[int, int]:
    return {pid: vm_rss_kib(pid) for pid in server.worker_pids()}


def sample_rss(server: Server, load: threading.Thread, began: float, every: float, samples: list[dict]) -> None:
    while load.is_alive():
        samples.append({"t": round(time.monotonic() - began), "rss_kib": rss(server)})
        load.join(timeout=every)


def wait_switched(server: Server, old_build: str, deadline: float) -> bool:
    """Whether every worker serves a new build before the deadline (20 health checks in a row reach both)."""
    while time.monotonic() < deadline:
        if all(server.build_id() != old_build for _ in range(20)):
            return True
        time.sleep(0.2)
    return False


def soak(server: Server, corpus: Path, index: Path, paths: list[str], args) -> dict:
    """Closed-loop load for `minutes`; `rebuild_after` seconds in, the corpus changes and `qa build` runs."""
    warmup = wrk(server.base, paths, args.warmup_seconds, args.connections)
    before, old_build = rss(server), server.build_id()
    seconds = args.minutes * 60
    result: dict = {}
    samples: list[dict] = []
    load = threading.Thread(target=lambda: result.update(wrk(server.base, paths, seconds, args.connections)))
    began = time.monotonic()
    load.start()
    sampler = threading.Thread(target=sample_rss, args=(server, load, began, args.sample_seconds, samples))
    sampler.start()
    time.sleep(args.rebuild_after)
    change_corpus(corpus)
    build_seconds = qa_build(corpus, index)
    switched = wait_switched(server, old_build, began + seconds)
    switched_at = round(time.monotonic() - began, 1)
    load.join()
    sampler.join()
    return {"warmup": warmup, "load": result,
            "rebuild": {"started_at_s": args.rebuild_after, "build_seconds": build_seconds, "old": old_build,
                        "new": server.build_id(), "switched_during_load": switched, "switched_at_s": switched_at},
            "rss_kib_before": before, "rss_kib_after": rss(server), "rss_kib_samples": samples}


def answered_again(base: str, paths: list[str], seconds: float = 120.0) -> dict:
    """After a burst: another client's answers at once; the flooding client's once its first search is answered
    again (under a rate limit, when its window has passed)."""
    other = normal_answers(base, paths, source=OTHER_CLIENT)
    began = time.monotonic()
    while one_request(base, paths[0]).status != 200 and time.monotonic() - began < seconds:
        time.sleep(1)
    return {"other_client_answers": f"{other}/20", "flooding_client_waited_s": round(time.monotonic() - began, 1)}


def burst(server: Server, paths: list[str], args) -> dict:
    flood = wrk(server.base, paths, args.burst_seconds, args.burst_connections, threads=2)
    return {"flood": flood, "after": answered_again(server.base, paths)}


def kill(server: Server, paths: list[str], args) -> dict:
    """SIGKILL one worker under load; classify every failed request by when it started."""
    with Load(server.base, paths, clients=args.kill_clients) as load:
        time.sleep(args.kill_after)
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()  # after the call: a request started before it may have reached the victim
        replaced_in = wait_for_replacement(server, victim, args.workers)
        time.sleep(args.kill_after)
    failures = [o for o in load.outcomes if o.status != 200]
    return {
        "requests": len(load.outcomes), "failed": len(failures),
        "failed_in_flight_at_kill": sum(o.started <= killed_at <= o.ended for o in failures),
        "failed_otherwise": [asdict(o) for o in failures if not o.started <= killed_at <= o.ended],
        "failure_kinds": sorted({o.error or str(o.status) for o in failures}),
        "bound_in_flight": f"<= {args.kill_clients} clients",
        "replaced_in_s": round(replaced_in, 1), "normal_answers_after": f"{normal_answers(server.base, paths)}/20",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="length of the soak phase")
    parser.add_argument("--rebuild-after", type=float, default=15, help="seconds into the soak when `qa build` runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16, help="wrk connections, as bench/run.py")
    parser.add_argument("--bench-seconds", type=float, default=30)
    parser.add_argument("--warmup-seconds", type=float, default=15)
    parser.add_argument("--sample-seconds", type=float, default=20)
    parser.add_argument("--burst-connections", type=int, default=256)
    parser.add_argument("--burst-seconds", type=float, default=15)
    parser.add_argument("--rate-limit", default="600/minute", help="of the rate-limited server in the burst phase")
    parser.add_argument("--kill-clients", type=int, default=8)
    parser.add_argument("--kill-after", type=float, default=5.0, help="seconds of load before and after the kill")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="qa-soak-"))
    corpus, index, log = work / "corpus", work / "index", work / "server.log"
    shutil.copytree(args.corpus, corpus)
    report: dict = {"config": {k: str(v) for k, v in vars(args).items()}, "initial_build_s": qa_build(corpus, index)}
    paths = search_paths()
    server = Server(corpus, index, args.workers, log=log).start()
    limited = None
    try:
        report["benchmark"] = wrk(server.base, paths, args.bench_seconds, args.connections)
        print(f"benchmark: {report['benchmark']['rps']} requests/s", file=sys.stderr)
        report["soak"] = soak(server, corpus, index, paths, args)
        print(f"soak: {report['soak']['load']['requests']} requests", file=sys.stderr)
        report["burst_queued"] = burst(server, paths, args)
        limited = Server(corpus, index, args.workers, ("--rate-limit", args.rate_limit), log=log).start()
        report["burst_rate_limited"] = burst(limited, paths, args)
        report["kill"] = kill(server, paths, args)
    finally:
        server.stop()
        if limited:
            limited.stop()
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
