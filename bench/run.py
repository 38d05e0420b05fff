"""The service's benchmark: one table of build, start-up, latency, throughput and memory figures, with targets.

    python bench/run.py [--quick] [--json PATH]

It builds the bundled corpus into a temporary folder with `qa build`, starts `qa serve --no-build` (gunicorn, the
production server) on a free 127.0.0.1 port, measures, stops it, and with growth factors builds corpora of varied
copies (10x, 100x) to show how build time and latency grow and how the approximate FAISS index recalls against
exact search. Everything it measures goes through public entry points (`qa build`, `qa serve`, `open_searcher`,
`Searcher.search`, `/api/search`), so it measures whichever `qa` is importable: run it with
`PYTHONPATH=<other checkout>/src` to measure another version with the same yardstick.

Only loopback is used, every loop has a count and every wait a deadline.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
START_DEADLINE_SECONDS = 120.0
BUILD_DEADLINE_SECONDS = 600.0  # for the bundled corpus; growth corpora get this per copy factor of ten


@dataclass
class Row:
    group: str
    measure: str
    value: float | int | str
    unit: str = ""
    target: str = ""
    met: bool | None = None


def row(group: str, measure: str, value: float | int | str, unit: str = "", at_most: float | None = None,
        at_least: float | None = None) -> Row:
    """A table row; with a target, whether the value met it."""
    if at_most is not None:
        return Row(group, measure, value, unit, f"≤ {at_most:g}", float(value) <= at_most)
    if at_least is not None:
        return Row(group, measure, value, unit, f"≥ {at_least:g}", float(value) >= at_least)
    return Row(group, measure, value, unit)


# ---------------------------------------------------------------- the machine and the inputs


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    return {"cores": os.cpu_count(), "cpu": cpu, "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0]}


def questions(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["question"] for line in f if line.strip()]


def search_paths(qs: Sequence[str], k: int = 5) -> list[str]:
    return [f"/api/search?{urllib.parse.urlencode({'q': q, 'k': k})}" for q in qs]


def percentiles(seconds: Sequence[float], which: Sequence[int] = (50, 95, 99)) -> dict[int, float]:
    """Percentiles in milliseconds."""
    values = np.percentile(np.asarray(seconds) * 1000, which)
    return {p: round(float(v), 2) for p, v in zip(which, values)}


# ---------------------------------------------------------------- building


def qa_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "qa.cli", *args]


def child_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def timed_build(corpus: Path, index: Path, deadline: float) -> tuple[float, float]:
    """Wall and CPU seconds of a `qa build` (process start, then loading or exporting the encoder, embedding, writing).

    The CPU seconds (user + system, all threads) show the work done whatever else shares the machine.
    """
    import resource

    began, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(qa_command("build", "--corpus", str(corpus), "--index", str(index)), env=child_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=deadline)
    if done.returncode != 0:
        raise RuntimeError(f"qa build failed:\n{done.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - began, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


SENTENCE_BREAK = re.compile(r"(?<=[.!?”])\s+(?=[A-Z“])")
MIN_VARIED_WORDS = 20  # shorter lines (titles, headings, bylines) stay as they are, so the layout parses the same


def varied_line(line: str, rng: random.Random) -> str:
    """A paragraph line with its sentences shuffled and about one word in twenty swapped with its neighbour."""
    sentences = SENTENCE_BREAK.split(line.strip())
    rng.shuffle(sentences)
    words = " ".join(sentences).split()
    for _ in range(max(1, len(words) // 20)):
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def write_copies(source: Path, target: Path, factor: int) -> None:
    """`factor` documents per source document: the original and `factor - 1` varied copies (seeded)."""
    target.mkdir(parents=True)
    for path in sorted(source.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        shutil.copyfile(path, target / path.name)
        for copy in range(1, factor):
            rng = random.Random(f"{path.name}-{copy}")
            lines = [varied_line(line, rng) if len(line.split()) >= MIN_VARIED_WORDS else line
                     for line in text.split("\n")]
            (target / f"{path.stem}-copy{copy:03d}.txt").write_text("\n".join(lines), encoding="utf-8")


# ---------------------------------------------------------------- in-process search


def latencies(call: Callable[[str], object], qs: Sequence[str], rounds: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds per `call(question)`, after one unmeasured round (first calls are cold start's).

    The CPU time (this thread's) moves less than the wall time when other processes load the machine.
    """
    for q in qs:
        call(q)
    wall, cpu = [], []
    for _ in range(rounds):
        for q in qs:
            began, began_cpu = time.perf_counter(), time.thread_time()
            call(q)
            wall.append(time.perf_counter() - began)
            cpu.append(time.thread_time() - began_cpu)
    return wall, cpu


def open_searcher(index: Path):
    from qa.engine import open_searcher as open_live

    return open_live(index)


def recall_against_flat(searcher, qs: Sequence[str], ks: Sequence[int] = (10, 50)) -> dict[str, float]:
    """Recall@k of the build's FAISS index against exact inner-product search, and both search times."""
    import faiss

    index = searcher.index
    exact = faiss.IndexFlatIP(index.vectors.shape[1])
    exact.add(index.vectors)
    query_vectors = searcher.embedder.encode(list(qs))
    figures: dict[str, float] = {}
    for k in ks:
        _, truth = exact.search(query_vectors, k)
        _, found = index.faiss_index.search(query_vectors, k)
        figures[f"recall@{k}"] = round(float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth, found)])), 4)
    for name, ann in (("flat", exact), ("index", index.faiss_index)):
        samples = []
        for vector in query_vectors:
            began = time.perf_counter()
            ann.search(vector[None, :], max(ks))
            samples.append(time.perf_counter() - began)
        figures[f"{name}_p50_ms"] = percentiles(samples, (50,))[50]
    return figures


# ---------------------------------------------------------------- the server


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    started: float  # perf_counter when the process was started
    log: Path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextmanager
def serving(corpus: Path, index: Path, workers: int, log: Path) -> Iterator[Server]:
    """`qa serve --no-build` on a free loopback port; stopped (SIGTERM, then SIGKILL) on leaving."""
    port = free_port()
    with open(log, "w") as err:
        began = time.perf_counter()
        process = subprocess.Popen(
            qa_command("serve", "--no-build", "--host", HOST, "--port", str(port), "--workers", str(workers),
                       "--corpus", str(corpus), "--index", str(index)),
            env=child_env(), stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield Server(process, port, began, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def first_answer_seconds(server: Server, path: str) -> float:
    """Seconds from process start until a search is answered 200 (the first request waits for a worker)."""
    deadline = server.started + START_DEADLINE_SECONDS
    while time.perf_counter() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"qa serve exited:\n{server.log.read_text()[-2000:]}")
        connection = http.client.HTTPConnection(HOST, server.port, timeout=START_DEADLINE_SECONDS)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                return time.perf_counter() - server.started
        except OSError:
            pass  # not listening yet
        finally:
            connection.close()
        time.sleep(0.005)
    raise TimeoutError(f"no answer within {START_DEADLINE_SECONDS} s:\n{server.log.read_text()[-2000:]}")


def http_latencies(port: int, paths: Sequence[str], rounds: int) -> tuple[list[float], int]:
    """Seconds per request on one keep-alive connection, after one unmeasured round; and the non-200 count."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    samples, errors = [], 0
    try:
        for measured in [False] + [True] * rounds:
            for path in paths:
                began = time.perf_counter()
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                if measured:
                    samples.append(time.perf_counter() - began)
                    errors += response.status != 200
    finally:
        connection.close()
    return samples, errors


WRK_SCRIPT = """\
local paths = {%s}
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
"""
_DURATION = re.compile(r"([\d.]+)(us|ms|s)\b")


def wrk_milliseconds(text: str) -> float:
    value, unit = _DURATION.match(text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk_load(port: int, paths: Sequence[str], seconds: int, threads: int, connections: int,
             folder: Path) -> dict[str, float]:
    """Requests/s, errors (non-2xx and socket errors) and latency percentiles from a bounded `wrk` run."""
    script = folder / "rotate.lua"
    script.write_text(WRK_SCRIPT % ", ".join(json.dumps(p) for p in paths))
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "--latency",
         "-s", str(script), f"http://{HOST}:{port}"],
        capture_output=True, text=True, timeout=seconds + 60, check=True)
    out = done.stdout
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE))
    return {"requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "errors": errors + (int(non_2xx.group(1)) if non_2xx else 0),
            "p50_ms": wrk_milliseconds(latency["50"]), "p99_ms": wrk_milliseconds(latency["99"])}


def workers(master: int) -> list[int]:
    """The process ids of the gunicorn master's children (its workers)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                children.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue  # a process that ended while we looked
    return children


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by these processes (all their threads)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


# ---------------------------------------------------------------- the parts of the table


@dataclass
class Options:
    corpus: Path
    questions: Path
    rounds: int
    cold_starts: int
    workers: int
    seconds: int
    threads: int
    connections: int
    growth: list[int]


def timed_rebuild(corpus: Path, index: Path, folder: Path) -> tuple[float, float]:
    """`timed_build` after every document changed, into a copy of `index`: all re-embedded, the export reused."""
    changed, rebuilt = folder / "corpus-changed", folder / "index-rebuilt"
    shutil.copytree(corpus, changed)
    for path in (p for p in changed.rglob("*") if p.suffix in (".txt", ".md")):
        path.write_text(path.read_text(encoding="utf-8") + "\n\nOne more paragraph.\n", encoding="utf-8")
    shutil.copytree(index, rebuilt)
    return timed_build(changed, rebuilt, BUILD_DEADLINE_SECONDS)


def build_rows(options: Options, folder: Path, reference: bool) -> tuple[list[Row], Path]:
    """Build the corpus fresh, then rebuild it changed; with `reference`, drop the fresh build's ONNX export so that
    it is served by sentence-transformers."""
    index = folder / "index"
    seconds, cpu = timed_build(options.corpus, index, BUILD_DEADLINE_SECONDS)
    again, again_cpu = timed_rebuild(options.corpus, index, folder)
    if reference:
        from qa.index import live_build

        shutil.rmtree(live_build(index) / "onnx", ignore_errors=True)
    return [row("build", "qa build, bundled corpus (fresh)", round(seconds, 2), "s", at_most=10),
            row("build", "qa build CPU time (user + system)", round(cpu, 1), "s"),
            row("build", "qa build, every document changed (export reused)", round(again, 2), "s", at_most=10),
            row("build", "that rebuild's CPU time (user + system)", round(again_cpu, 1), "s")], index


def in_process_rows(index: Path, qs: list[str], rounds: int) -> tuple[list[Row], str]:
    began = time.perf_counter()
    searcher = open_searcher(index)
    opened = time.perf_counter() - began
    wall, cpu = latencies(searcher.search, qs, rounds)
    encoder_pass = percentiles(latencies(lambda q: searcher.embedder.encode([q]), qs, rounds)[0], (50,))[50]
    p, c = percentiles(wall), percentiles(cpu, (50,))
    group = "in-process"
    rows = [row(group, "open_searcher", round(opened, 2), "s"),
            row(group, f"search p50 ({len(qs)} questions x {rounds})", p[50], "ms", at_most=2.5),
            row(group, "search p95", p[95], "ms"),
            row(group, "search p99", p[99], "ms", at_most=5),
            row(group, "search CPU time p50 (thread)", c[50], "ms"),
            row(group, "query encoder pass alone p50", encoder_pass, "ms"),
            row(group, "search p50 / encoder pass p50", round(p[50] / encoder_pass, 2), "x", at_most=1.5)]
    return rows, f"{type(searcher.embedder).__name__} ({searcher.embedder.encoder})"


def server_rows(options: Options, index: Path, qs: list[str], folder: Path) -> list[Row]:
    paths = search_paths(qs)
    starts = []
    for attempt in range(options.cold_starts):
        with serving(options.corpus, index, options.workers, folder / f"cold-{attempt}.log") as server:
            starts.append(first_answer_seconds(server, paths[0]))
    rows = [row("server", f"cold start to first answer (median of {len(starts)}, {options.workers} workers)",
                round(statistics.median(starts), 2), "s", at_most=1.5)]
    with serving(options.corpus, index, options.workers, folder / "serve.log") as server:
        first_answer_seconds(server, paths[0])
        samples, errors = http_latencies(server.port, paths, options.rounds)
        p = percentiles(samples, (50, 99))
        pids = workers(server.process.pid)
        cpu_before = cpu_seconds(pids)
        load = wrk_load(server.port, paths, options.seconds, options.threads, options.connections, folder)
        cpu_per_request = (cpu_seconds(pids) - cpu_before) / max(1, load["requests"])
        peaks = [peak_rss_mb(pid) for pid in pids]
    wrk = f"wrk -t{options.threads} -c{options.connections} -d{options.seconds}s"
    return rows + [
        row("http", "GET /api/search p50 (keep-alive, sequential)", p[50], "ms", at_most=5),
        row("http", "GET /api/search p99", p[99], "ms", at_most=15),
        row("http", "errors (sequential)", errors, "", at_most=0),
        row("load", f"throughput ({wrk}, {options.workers} workers)", round(load["requests_per_second"], 1),
            "req/s", at_least=400),
        row("load", "errors (non-2xx + socket)", load["errors"], f"of {load['requests']}", at_most=0),
        row("load", "latency under load p50", load["p50_ms"], "ms"),
        row("load", "latency under load p99", load["p99_ms"], "ms"),
        row("load", "worker CPU time per request (all workers' CPU / requests)", round(cpu_per_request * 1000, 2),
            "ms"),
        row("memory", f"peak RSS per worker (VmHWM, {len(peaks)} workers, max)", round(max(peaks), 1), "MB",
            at_most=300),
    ]


def growth_factor_rows(factor: int, options: Options, qs: list[str], folder: Path) -> list[Row]:
    """Build `factor` varied copies of the corpus, then search them; the approximate index's recall if it has one."""
    corpus, index = folder / f"corpus-x{factor}", folder / f"index-x{factor}"
    group = f"growth x{factor}"
    write_copies(options.corpus, corpus, factor)
    deadline = BUILD_DEADLINE_SECONDS * max(1, factor // 10)
    try:
        seconds, cpu = timed_build(corpus, index, deadline)
    except subprocess.TimeoutExpired:
        return [row(group, "qa build (fresh)", f"unfinished after {deadline:g}", "s")]
    finally:
        shutil.rmtree(corpus)
    began = time.perf_counter()
    searcher = open_searcher(index)
    opened = time.perf_counter() - began
    wall, cpu_search = latencies(searcher.search, qs, max(1, options.rounds // 2))
    p, c = percentiles(wall), percentiles(cpu_search, (50,))
    manifest = searcher.index.manifest
    rows = [row(group, f"chunks (FAISS {manifest['faiss']})", manifest["chunks"]),
            row(group, "qa build (fresh)", round(seconds, 1), "s"),
            row(group, "qa build CPU time (user + system)", round(cpu, 1), "s"),
            row(group, "open_searcher", round(opened, 2), "s"),
            row(group, "search p50", p[50], "ms"),
            row(group, "search p99", p[99], "ms"),
            row(group, "search CPU time p50 (thread)", c[50], "ms")]
    if manifest["faiss"] != "flat":
        recall = recall_against_flat(searcher, qs)
        rows += [row(group, f"{manifest['faiss']} recall@10 vs flat (dev questions)", recall["recall@10"]),
                 row(group, f"{manifest['faiss']} recall@50 vs flat", recall["recall@50"]),
                 row(group, "dense search p50: flat / approximate",
                     f"{recall['flat_p50_ms']} / {recall['index_p50_ms']}", "ms")]
    shutil.rmtree(index)
    return rows


def growth_rows(options: Options, qs: list[str], folder: Path) -> list[Row]:
    """Every growth factor's rows, each also printed to standard error as soon as it is measured."""
    rows: list[Row] = []
    for factor in options.growth:
        measured = growth_factor_rows(factor, options, qs, folder)
        print(markdown(measured), file=sys.stderr, flush=True)
        rows += measured
    return rows


# ---------------------------------------------------------------- the table


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| group | measure | value | unit | target | met |", "|---|---|---:|---|---|---|"]
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.group} | {r.measure} | {r.value} | {r.unit} | {r.target} | {met} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one cold start, 2 rounds, a 5 s load and no growth corpora")
    parser.add_argument("--json", type=Path, help="also write the table and the machine as JSON here")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    parser.add_argument("--questions", type=Path, default=ROOT / "eval" / "dev.jsonl")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over the questions for latencies")
    parser.add_argument("--cold-starts", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=int, default=10, help="length of the wrk load")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--growth", default="10,100", help="copy factors for the growth corpora ('' for none)")
    parser.add_argument("--skip-server", action="store_true", help="no cold start, HTTP, load or memory rows")
    parser.add_argument("--reference-encoder", action="store_true",
                        help="serve the fresh build without its ONNX export, i.e. with sentence-transformers on torch")
    parser.add_argument("--query-encoder", choices=("exact", "int8"), default="exact",
                        help="the query_encoder setting, for this process and the server it starts")
    parser.add_argument("--index", type=Path,
                        help="measure this built index instead of building one (no build row): e.g. from an "
                             "environment without torch, as the container's runtime stage is")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.cold_starts, args.seconds, args.growth = 2, 1, 5, ""
    growth = [int(f) for f in args.growth.split(",") if f.strip()]
    return (Options(args.corpus.resolve(), args.questions, args.rounds, args.cold_starts, args.workers, args.seconds,
                    args.threads, args.connections, growth), args)


def main(argv: Sequence[str]) -> None:
    options, args = parse_args(argv)
    os.environ["QA_QUERY_ENCODER"] = args.query_encoder
    info = machine()
    qs = questions(options.questions)
    with tempfile.TemporaryDirectory(prefix="qa-bench-") as tmp:
        folder = Path(tmp)
        rows, index = ([], args.index.resolve()) if args.index else build_rows(options, folder, args.reference_encoder)
        in_process, embedder = in_process_rows(index, qs, options.rounds)
        rows += in_process
        if not args.skip_server:
            rows += server_rows(options, index, qs, folder)
        rows += growth_rows(options, qs, folder)
    import qa

    info.update(embedder=embedder, qa_source=str(Path(qa.__file__).parent),
                load_average_at_end=[round(x, 2) for x in os.getloadavg()])
    command = "python bench/run.py " + " ".join(argv)
    print(f"`{command.strip()}` on {info['cores']} cores ({info['cpu']}), query encoder {embedder}, "
          f"load average {info['load_average_at_start']} at start, {info['load_average_at_end']} at end\n")
    print(markdown(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command.strip(), "machine": info,
                                         "rows": [asdict(r) for r in rows]}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1:])
