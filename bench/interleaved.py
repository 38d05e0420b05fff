"""Search latency of several published sizes and both backends under the same load: every question asked of each in
turn, so that a shared machine's load falls on all of them alike (`archive.py` measures one after the other).

    python bench/interleaved.py --index SMALL_INDEX --index LARGE_INDEX [--rounds 3] [--questions JSONL]

Each `--index` is a live file build with its build published into the embedded server under it
(`archive.py`'s sizes made by `worker_memory.replicate`, then `postgres_store.publish`): nothing is built or
published here. In-process, whole index, 10 results, after a warm-up; prints p50/p99 of each and each p50 against
the first index's p50 of the same backend.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "bench")]

from archive import QUESTIONS  # noqa: E402
from backends import percentile  # noqa: E402

from qa.engine import load_embedder, open_searcher  # noqa: E402
from qa.evaluation import load_jsonl  # noqa: E402
from qa.index import load  # noqa: E402
from qa.postgres_store import PostgresBackend, database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, action="append", required=True, help="a published build (repeat)")
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    questions = [item["question"] for item in load_jsonl(args.questions)]
    embedder = load_embedder(load(args.index[0]))
    with ExitStack() as stack:
        searchers = {}
        for index_dir in args.index:
            url = stack.enter_context(database(index_dir, None))
            for backend in ("faiss", "postgres"):
                pg = PostgresBackend(url) if backend == "postgres" else None
                searchers[(index_dir, backend)] = open_searcher(index_dir, embedder=embedder, backend=pg)
        took: dict = {key: [] for key in searchers}
        for round_number in range(args.rounds + 1):  # the first round warms every searcher up
            for question in questions:
                for key, searcher in searchers.items():
                    began = time.perf_counter()
                    searcher.search(question, 10)
                    if round_number:
                        took[key].append((time.perf_counter() - began) * 1000)
    print(f"{'passages':>9} {'backend':9} {'p50 ms':>7} {'p99 ms':>7} {'p50 / first':>11}")
    for (index_dir, backend), samples in took.items():
        first = percentile(took[(args.index[0], backend)], 0.5)
        p50 = percentile(samples, 0.5)
        passages = len(searchers[(index_dir, backend)].index.chunks)
        print(f"{passages:>9,} {backend:9} {p50:7.1f} {percentile(samples, 0.99):7.1f} {p50 / first:11.2f}")


if __name__ == "__main__":
    main()
