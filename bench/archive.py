"""The archive benchmark: what a search costs as the corpus grows, FAISS files against PostgreSQL + pgvector.

    python bench/archive.py --index REAL_PAPERS_INDEX --sizes 1,13115,52460,104920 \\
        [--build-json FIGURES | --corpus PAPERS] [--questions JSONL] [--backends faiss,postgres]
        [--ef-search 128,256] [--json PATH] [--plot SVG]
    python bench/archive.py --replot artifacts/archive.json --plot docs/archive.svg   # table and plot again

`--index` holds a live build of real papers (the 220 QASPER papers of `eval/qasper` and `eval/qasper-train`).
Each size (in passages) is made from it by `worker_memory.replicate`: below the build's size, its first documents;
above, the papers themselves and varied copies of them (`worker_memory.vary`: every passage loses a sentence,
gains one of another paper and may have two swapped; vectors derived from the originals' rows, no embedding). The
build rate
comes from the real papers only: `build_speed.py`'s figures of the same corpus, read from `--build-json` or
measured here with `--corpus` (minutes). For each size and backend it measures:

- bytes on disk: the live build's files but the ONNX export (FAISS), the database's size after publishing (PostgreSQL);
- publish: writing the build into the embedded server (`postgres_store.publish`, one transaction);
- open: `engine.open_searcher` in this process (index, stores, BM25; the query encoder is shared and not counted);
- search p50/p99 in-process (`backends.timings`: every question, whole index, 10 results, after a warm-up);
- search p50/p99 over HTTP: `qa serve --no-build` with 2 gunicorn workers on loopback, GET /api/search, one client;
  then the RSS and private memory of each worker from /proc (both have answered by then);
- recall@10 of the dense search (FAISS index; PostgreSQL's HNSW index) against exact inner products over the same
  vectors, for the questions' vectors (1.0 below `index.APPROXIMATE_ABOVE`, where both are exact), and recall@100
  of PostgreSQL's BM25 candidates against BM25 of every passage;
- FAISS: the seconds `worker_memory.replicate` took to write the build (`index.write_staged`: every file, the HNSW
  index included), and `index.make_faiss_index` timed again alone on the build's passage vectors; with
  `--ef-search`, recall@10 and the FAISS search's own p50 per question at each of those `efSearch` values (the
  build's index searched, one question at a time).

Every server started is stopped (the embedded PostgreSQL when its block ends, `qa serve` by SIGTERM); `--timeout`
bounds each server's start.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "bench")]

from backends import percentile, timings  # noqa: E402
from build_speed import measure as measure_build  # noqa: E402
from worker_memory import memory_mb, replicate  # noqa: E402

from qa.engine import load_embedder, open_searcher  # noqa: E402
from qa.faiss_store import FaissBm25Store  # noqa: E402
from qa.evaluation import load_jsonl  # noqa: E402
from qa.index import live_build, load, make_faiss_index  # noqa: E402
from qa.postgres_store import PostgresBackend, database, publish  # noqa: E402
from qa.search import CANDIDATES  # noqa: E402

QUESTIONS = ROOT.parent / "shared" / "eval" / "qasper" / "questions.jsonl"


def disk_bytes(build: Path) -> int:
    """The build's files, without the query encoder's ONNX export (the same at every size)."""
    return sum(p.stat().st_size for p in build.rglob("*") if p.is_file() and "onnx" not in p.relative_to(build).parts)


def recall(found: list[np.ndarray], exact: np.ndarray, k: int) -> float:
    """Mean share of each question's `found` chunk ids that belong in its exact top `k` (`exact`: one row of scores
    per question, over every passage), out of `k` or of the passages with a positive score if fewer.

    A result counts when its score reaches the exact k-th score: passages that tie with it are as right as the
    one the exact order happened to keep.
    """
    shares = []
    for ids, row in zip(found, exact):
        top = min(k, len(row))
        cut = -np.partition(-row, top - 1)[top - 1]
        wanted = min(top, int(np.sum(row > 0))) or top
        shares.append(min(1.0, np.sum(row[ids[ids >= 0]] >= cut - 1e-5) / wanted))
    return float(np.mean(shares))


def faiss_figures(index_dir: Path, query_vectors: np.ndarray, ef_search: list[int]) -> dict:
    """recall@10 of the build's FAISS index against exact inner products over every passage vector (at the build's
    own `efSearch`, then at each of `ef_search` with the index's search time per question); the seconds
    `make_faiss_index` takes on the passage vectors."""
    index = load(index_dir)
    exact = query_vectors @ np.asarray(index.vectors, dtype=np.float32).T
    _, found = index.faiss_index.search(query_vectors, 10)
    figures: dict = {"recall_at_10": recall(list(found), exact, 10), "ef_search": {}}
    for ef in ef_search if index.manifest["faiss"] == "hnsw" else []:
        faiss.ParameterSpace().set_index_parameter(index.faiss_index, "efSearch", ef)
        took, rows = [], []
        for vector in query_vectors:
            began = time.perf_counter()
            rows.append(index.faiss_index.search(vector[None, :], 10)[1][0])
            took.append((time.perf_counter() - began) * 1000)
        figures["ef_search"][str(ef)] = {"recall_at_10": recall(rows, exact, 10), "p50_ms": percentile(took, 0.5),
                                         "p99_ms": percentile(took, 0.99)}
    vectors = np.ascontiguousarray(index.vectors, dtype=np.float32)
    began = time.perf_counter()
    make_faiss_index(vectors)
    figures["faiss_index_s"] = time.perf_counter() - began
    return figures


def postgres_recalls(searcher, index_dir: Path, questions: list[str], query_vectors: np.ndarray) -> dict:
    """recall@10 of the dense search over the whole build (HNSW above `index.APPROXIMATE_ABOVE` passages) against
    exact inner products, and recall@100 of its BM25 candidates against BM25 of every passage (the FAISS
    backend's, computed in full)."""
    index = load(index_dir)
    store = searcher.store
    whole = store.scope(None)
    dense = [store.dense_candidates(v, whole, 10) for v in query_vectors]
    none = np.empty(0, dtype=np.int64)
    lexical = [store.lexical_candidates(q, None, CANDIDATES, none)[0] for q in questions]
    reference = FaissBm25Store(index)
    exact_lexical = np.array([reference.lexical_scores(q, None) for q in questions])
    return {"recall_at_10": recall(dense, query_vectors @ np.asarray(index.vectors, dtype=np.float32).T, 10),
            "bm25_recall_at_100": recall(lexical, exact_lexical, CANDIDATES)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def http_figures(index_dir: Path, questions: list[str], rounds: int, timeout: float, database_url: str | None) -> dict:
    """Latency of GET /api/search from `qa serve` (2 workers), then each worker's memory."""
    port = free_port()
    command = [sys.executable, "-m", "qa.cli", "serve", "--no-build", "--index", str(index_dir),
               "--corpus", str(index_dir), "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    if database_url:
        command += ["--backend", "postgres", "--database-url", database_url]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ask(question: str) -> float:
        url = f"http://127.0.0.1:{port}/api/search?" + urllib.parse.urlencode({"q": question, "k": 10})
        began = time.perf_counter()
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
        return (time.perf_counter() - began) * 1000

    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                ask(questions[0])
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"qa serve did not answer within {timeout:.0f} s") from None
                time.sleep(0.5)
        for question in questions[:20]:  # warm both workers (each opens the index on its first request)
            ask(question)
        took = [ask(q) for _ in range(rounds) for q in questions]
        workers = [memory_mb(pid) for pid in children(server.pid)]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return {"http_p50_ms": percentile(took, 0.5), "http_p99_ms": percentile(took, 0.99),
            "workers_rss_mb": [w["rss_mb"] for w in workers], "workers_private_mb": [w["private_mb"] for w in workers]}


def in_process(searcher, items: list[dict], rounds: int) -> dict:
    timings(searcher, items[:5], 1, False)
    took, _ = timings(searcher, items, rounds, False)
    return {"search_p50_ms": percentile(took, 0.5), "search_p99_ms": percentile(took, 0.99)}


def measure_size(index_dir: Path, backend: str, embedder, items: list[dict], args) -> dict:
    questions = [item["question"] for item in items]
    figures: dict = {"backend": backend}
    if backend == "faiss":
        figures["disk_bytes"] = disk_bytes(live_build(index_dir))  # type: ignore[arg-type]
        began = time.perf_counter()
        searcher = open_searcher(index_dir, embedder=embedder)
        figures["open_s"] = time.perf_counter() - began
        figures.update(in_process(searcher, items, args.rounds))
        figures["passages"] = len(searcher.index.chunks)
        del searcher
        figures.update(http_figures(index_dir, questions, args.rounds, args.timeout, None))
        figures.update(faiss_figures(index_dir, embedder.encode(questions), args.ef_search))
        figures["bm25_recall_at_100"] = 1.0  # every passage scored
        return figures
    with database(index_dir, None) as url:
        began = time.perf_counter()
        publish(index_dir, url)
        figures["publish_s"] = time.perf_counter() - began
        pg = PostgresBackend(url)
        began = time.perf_counter()
        searcher = open_searcher(index_dir, embedder=embedder, backend=pg)
        figures["open_s"] = time.perf_counter() - began
        figures["disk_bytes"] = searcher.store.db.rows("SELECT pg_database_size(current_database())")[0][0]
        figures.update(in_process(searcher, items, args.rounds))
        figures["passages"] = len(searcher.index.chunks)
        figures.update(postgres_recalls(searcher, index_dir, questions, embedder.encode(questions)))
        del searcher
        figures.update(http_figures(index_dir, questions, args.rounds, args.timeout, url))
    return figures


def print_table(build: dict, rows: list[dict]) -> None:
    print(f"build of the real papers: {build['passages']:,} passages, {build['tokens']:,} tokens, "
          f"{build['build_wall_s']:.0f} s wall, {build['build_cpu_s']:.0f} s CPU, "
          f"{build['build_tokens_per_s']:,.0f} tokens/s = {build['build_vs_floor']:.2f}x the floor "
          f"({build['floor_tokens_per_s']:,.0f} tokens/s); "
          f"per passage {build['build_cpu_s'] / build['passages'] * 1000:.0f} ms CPU")
    print(f"{'passages':>9} {'backend':9} {'disk MB':>8} {'publish s':>9} {'open s':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'HTTP p50':>8} {'HTTP p99':>8} {'RSS w1/w2 MB':>13} {'priv w1/w2 MB':>13} {'recall@10':>9} "
          f"{'BM25 r@100':>10}")
    for r in rows:
        rss = "/".join(f"{v:.0f}" for v in r["workers_rss_mb"])
        private = "/".join(f"{v:.0f}" for v in r["workers_private_mb"])
        publish_s = f"{r['publish_s']:.1f}" if "publish_s" in r else "-"
        print(f"{r['passages']:>9,} {r['backend']:9} {r['disk_bytes'] / 1e6:8.1f} {publish_s:>9} {r['open_s']:7.2f} "
              f"{r['search_p50_ms']:7.1f} {r['search_p99_ms']:7.1f} {r['http_p50_ms']:8.1f} {r['http_p99_ms']:8.1f} "
              f"{rss:>13} {private:>13} {r['recall_at_10']:9.3f} {r.get('bm25_recall_at_100', 1.0):10.3f}")
    for r in rows:
        if "write_s" in r and "faiss_index_s" in r:
            sweep = "; ".join(f"efSearch {ef}: recall@10 {f['recall_at_10']:.3f}, FAISS p50 / p99 {f['p50_ms']:.2f} / "
                              f"{f['p99_ms']:.2f} ms" for ef, f in r.get("ef_search", {}).items())
            print(f"{r['passages']:>9,} faiss: build written in {r['write_s']:.0f} s (made in {r['replicate_s']:.0f} "
                  f"s), make_faiss_index alone {r['faiss_index_s']:.1f} s" + (f"; {sweep}" if sweep else ""))


BOTH = ("faiss", "postgres")
PANELS = (("FAISS search p50 (ms)", ("search_p50_ms", "http_p50_ms"), ("faiss",)),
          ("PostgreSQL search p50 (ms)", ("search_p50_ms", "http_p50_ms"), ("postgres",)),
          ("open (s)", ("open_s",), BOTH), ("first worker RSS (MB)", ("rss_1",), BOTH),
          ("disk (MB)", ("disk_mb",), BOTH))
COLOURS = {"faiss": "#1f77b4", "postgres": "#d62728"}


def write_svg(rows: list[dict], path: Path) -> None:
    """Cost against corpus size (log scale), one panel per cost, a line per backend (dashed: over HTTP)."""
    width, height, left, top, bottom = 250, 220, 50, 30, 40
    sizes = [r["passages"] for r in rows]
    low = math.log10(min(sizes))
    high = max(math.log10(max(sizes)), low + 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * len(PANELS)}" height="{height}" '
             'font-family="sans-serif" font-size="11">', '<rect width="100%" height="100%" fill="white"/>']
    for n, (title, keys, backends) in enumerate(PANELS):
        x0 = n * width + left
        plot_w, plot_h = width - left - 15, height - top - bottom

        def value(r: dict, key: str) -> float:
            return {"rss_1": r["workers_rss_mb"][0], "disk_mb": r["disk_bytes"] / 1e6}.get(key, r.get(key, 0.0))

        top_value = max(value(r, k) for r in rows if r["backend"] in backends for k in keys) * 1.1 or 1.0
        parts += [f'<text x="{x0}" y="18" font-weight="bold">{title}</text>',
                  f'<line x1="{x0}" y1="{top + plot_h}" x2="{x0 + plot_w}" y2="{top + plot_h}" stroke="black"/>',
                  f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{top + plot_h}" stroke="black"/>',
                  f'<text x="{x0 - 4}" y="{top + 4}" text-anchor="end">{top_value:.0f}</text>',
                  f'<text x="{x0 - 4}" y="{top + plot_h}" text-anchor="end">0</text>']
        for exponent in range(math.ceil(low), math.floor(high) + 1):
            x = x0 + (exponent - low) / (high - low) * plot_w
            parts.append(f'<text x="{x:.0f}" y="{top + plot_h + 14}" text-anchor="middle">10^{exponent}</text>')
        parts.append(f'<text x="{x0 + plot_w / 2}" y="{height - 6}" text-anchor="middle">passages</text>')
        for backend in backends:
            colour = COLOURS[backend]
            mine = sorted((r for r in rows if r["backend"] == backend), key=lambda r: r["passages"])
            for k, key in enumerate(keys):
                points = " ".join(f"{x0 + (math.log10(r['passages']) - low) / (high - low) * plot_w:.1f},"
                                  f"{top + plot_h - value(r, key) / top_value * plot_h:.1f}" for r in mine)
                dash = ' stroke-dasharray="4,3"' if k else ""
                parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        if n == 2:
            parts += [f'<text x="{x0 + 8 + 70 * k}" y="{top + 10}" fill="{c}">{b}</text>'
                      for k, (b, c) in enumerate(COLOURS.items())]
    path.write_text("\n".join(parts + ["</svg>"]) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, help="a live build of real papers (read only)")
    parser.add_argument("--sizes", default="1", help="passages, comma-separated: 1 is one paper")
    parser.add_argument("--build-json", type=Path, help="build_speed.py figures of the papers of --index")
    parser.add_argument("--corpus", type=Path, help="measure the build of these papers here instead")
    parser.add_argument("--questions", type=Path, default=QUESTIONS, help="JSONL with a `question` per line")
    parser.add_argument("--backends", default="faiss,postgres")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ef-search", type=lambda v: [int(x) for x in v.split(",")], default=[],
                        help="FAISS: recall@10 and search time at these HNSW efSearch values, comma-separated")
    parser.add_argument("--timeout", type=float, default=600, help="seconds a server may take to start")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--plot", type=Path, help="also draw cost against size into this SVG file")
    parser.add_argument("--replot", type=Path, help="print the table (and --plot) of an earlier --json only")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(args.replot.read_text(encoding="utf-8"))
        report(saved["build"], saved["rows"], args.plot)
        return
    if not args.index:
        raise SystemExit("give --index (a live build of real papers) or --replot")
    if args.build_json:
        build = json.loads(args.build_json.read_text(encoding="utf-8"))
    elif args.corpus:
        build = measure_build(args.corpus)
    else:
        raise SystemExit("give --build-json or --corpus: the build rate is taken from the real papers")
    items = [{"question": item["question"]} for item in load_jsonl(args.questions)]
    base = load(args.index)
    embedder = load_embedder(base)
    rows: list[dict] = []
    for size in (int(s) for s in args.sizes.split(",")):
        copies = max(1, math.ceil(size / len(base.chunks)))
        for backend in args.backends.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                index_dir = Path(tmp) / "index"
                began = time.perf_counter()
                write_s = replicate(args.index, index_dir, copies, limit=size)
                made = {"size": size, "replicate_s": time.perf_counter() - began, "write_s": write_s}
                rows.append({**made, **measure_size(index_dir, backend, embedder, items, args)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            if args.json:
                args.json.write_text(json.dumps({"build": build, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    report(build, rows, args.plot)


def report(build: dict, rows: list[dict], plot: Path | None) -> None:
    print_table(build, rows)
    if plot:
        write_svg(rows, plot)


if __name__ == "__main__":
    main()
