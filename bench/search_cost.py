"""In-process search latency of two checkouts side by side, on one index, in one run; and MaxSim's own cost.

    python bench/search_cost.py [--other /work/main/src] [--rounds 5]

Each checkout runs in its own process (its `qa` first on the path) over the same live index (`index/`) and the
dev questions, alternating, so that both see the same machine load. MaxSim's cost is that of re-scoring the top
30 candidates from int8 token states (128 dimensions), measured here on random states of the bundled document's
size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, statistics, sys, time
from pathlib import Path
from qa.engine import open_searcher
searcher = open_searcher(Path(sys.argv[1]))
questions = [json.loads(line)["question"] for line in open(sys.argv[2], encoding="utf-8")]
for q in questions[:5]:
    searcher.search(q)
samples = []
for _ in range(int(sys.argv[3])):
    for q in questions:
        began = time.perf_counter()
        searcher.search(q)
        samples.append((time.perf_counter() - began) * 1000)
print(json.dumps({"p50": statistics.median(samples), "n": len(samples)}))
"""


def probe(source: Path, rounds: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(source)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / "index"), str(ROOT / "eval" / "dev.jsonl"),
                          str(rounds)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def maxsim_cost(repeats: int = 200) -> float:
    import numpy as np

    from qa.late_interaction import TokenStates, compress, maxsim_scores, normalize_rows

    rng = np.random.default_rng(0)
    counts = np.full(136, 109)
    states = compress(TokenStates(normalize_rows(rng.normal(size=(counts.sum(), 128))),
                                  np.concatenate([[0], np.cumsum(counts)])))
    query = normalize_rows(rng.normal(size=(12, 128)))
    candidates = rng.choice(136, 30, replace=False)
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        maxsim_scores(query, states, candidates)
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", default="/work/main/src", help="the other checkout's src folder")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"other": [], "this": []}
    for _ in range(3):  # alternate, so that both see the same load
        results["other"].append(probe(Path(args.other), args.rounds)["p50"])
        results["this"].append(probe(ROOT / "src", args.rounds)["p50"])
    for name, values in results.items():
        print(f"{name}: search p50 {statistics.median(values):.2f} ms (runs: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"MaxSim over the top 30 (int8, 128 dimensions): {maxsim_cost():.2f} ms a question")


if __name__ == "__main__":
    main()
