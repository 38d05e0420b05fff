"""Search latency in-process, FAISS files against PostgreSQL + pgvector, over the same build of the same corpus.

    python bench/backends.py                          # the bundled paper: build it if needed, embedded server
    python bench/backends.py --corpus eval/qasper/papers --index /tmp/qasper-index --rounds 3
    python bench/backends.py --database-url postgresql://qa:qa@localhost/qa

Every question of the dev set (or the corpus's `questions.jsonl` when given with --questions) is asked `--rounds`
times through `Searcher.search` (10 results, as `qa eval`), whole corpus and, when a question names a document,
restricted to it; the query encoder is the same for both, so the difference is the store. Prints p50/p90/p99 in ms,
and the share of questions whose top-10 chunk ids are the same on both backends.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from qa.cli import run_build
from qa.engine import open_searcher
from qa.evaluation import load_jsonl
from qa.postgres_store import PostgresBackend, database, publish

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def timings(searcher, items: list[dict], rounds: int, restricted: bool) -> tuple[list[float], list[list[int]]]:
    """Milliseconds of each search, and the top-10 chunk ids of the last round."""
    times: list[float] = []
    tops: list[list[int]] = []
    for round_number in range(rounds):
        for item in items:
            document = item.get("document") if restricted else None
            began = time.perf_counter()
            response = searcher.search(item["question"], 10, document)
            times.append((time.perf_counter() - began) * 1000)
            if round_number == rounds - 1:
                tops.append([r["chunk"] for r in response["results"]])
    return times, tops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(ROOT / "corpus"))
    parser.add_argument("--index", default=str(ROOT / "index"))
    parser.add_argument("--questions", default=str(ROOT / "eval" / "dev.jsonl"))
    parser.add_argument("--database-url", default="", help="Default: an embedded server under the index folder.")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    index, corpus = Path(args.index), Path(args.corpus)
    items = load_jsonl(Path(args.questions))
    with database(index, args.database_url or None) as url:
        run_build(str(corpus), str(index))
        publish(index, url)
        files = open_searcher(index, corpus)
        pg = open_searcher(index, corpus, embedder=files.embedder, backend=PostgresBackend(url))
        print(f"{len(files.index.chunks)} passages in {len(files.index.documents)} document(s), "
              f"{len(items)} questions x {args.rounds} rounds")
        scopes = [("whole corpus", False)] + ([("one document", True)] if any("document" in i for i in items) else [])
        print(f"{'backend':10} {'scope':14} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'same top-10':>12}")
        for label, restricted in scopes:
            timings(files, items[:5], 1, restricted)  # warm both (encoder, caches, connections)
            timings(pg, items[:5], 1, restricted)
            results = {name: timings(s, items, args.rounds, restricted) for name, s in (("faiss", files),
                                                                                         ("postgres", pg))}
            same = statistics.mean(a == b for a, b in zip(results["faiss"][1], results["postgres"][1]))
            for name, (times, _) in results.items():
                print(f"{name:10} {label:14} {percentile(times, 0.5):8.2f} {percentile(times, 0.9):8.2f} "
                      f"{percentile(times, 0.99):8.2f} {same:12.2f}")


if __name__ == "__main__":
    main()
