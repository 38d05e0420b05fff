"""Fusion weights over cached ranking signals (bench/ranking_signals.py): ablations and cross-validated choice.

    python bench/fusion.py            # ablation table on every cached set, and the cross-validated choice

A setting is scored per question (rank of the first passage that hits), so a choice can be cross-validated
cheaply: the weights are chosen on the training folds of the policy paper (dev) and of QASPER train together, by
the worse of the two sets' mean reciprocal rank, and scored on the held-out folds; QASPER validation (`qasper`) is
only reported, never chosen on.
"""

from __future__ import annotations

import itertools
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ranking_signals import ARTIFACTS

from qa.fusion import FusionWeights, fused_order

FIT_SETS = ("dev", "qasper-train")
VARIANT = "pca128"  # the token-state storage compared in the grid (bench/ranking_signals.py)
FOLDS = 5
TODAY = FusionWeights(passage=0.5, section=0.2, dense=0.6, maxsim=0.0)  # the fusion before MaxSim


def load_records(name: str) -> list[dict] | None:
    path = ARTIFACTS / f"signals-{name}.pkl"
    if not path.exists():
        return None
    with open(path, "rb") as f:
        return [r for r in pickle.load(f)["records"] if r["answerable"]]


def signals(record: dict, variant: str) -> dict[str, np.ndarray]:
    return {"passage": record["passage"], "sentence": record["sentence"], "section": record["section"],
            "bm25": record["bm25"], "maxsim": record["maxsim"][variant]}


def first_hits(records: list[dict], weights: FusionWeights, variant: str = VARIANT) -> list[dict]:
    """Per question: rank of the first hit (None past 10), and whether the top passage's section and highlight hit."""
    out = []
    for r in records:
        order = fused_order(signals(r, variant), weights)
        hits = r["hit"][order[:10]]
        first = int(np.argmax(hits)) + 1 if hits.any() else None
        out.append({"id": r["id"], "first": first, "section": bool(r["section_hit"][order[0]]),
                    "highlight": bool(r["highlight_hit"][order[0]])})
    return out


def figures(per_question: list[dict]) -> dict[str, float]:
    n = len(per_question)
    return {"hit@1": sum(q["first"] == 1 for q in per_question) / n,
            "hit@5": sum(q["first"] is not None and q["first"] <= 5 for q in per_question) / n,
            "mrr@10": sum(1 / q["first"] for q in per_question if q["first"]) / n,
            "section@1": sum(q["section"] for q in per_question) / n,
            "highlight@1": sum(q["highlight"] for q in per_question) / n}


def grid() -> list[FusionWeights]:
    return [FusionWeights(passage=p, section=s, dense=d, maxsim=m)
            for p, s, d, m in itertools.product((0.3, 0.5, 0.7), (0.0, 0.1, 0.2, 0.3), (0.4, 0.5, 0.6, 0.7),
                                                (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0))]


def reciprocal_ranks(records: list[dict], settings: list[FusionWeights]) -> np.ndarray:
    """(settings, questions) matrix of 1/rank of the first hit (0 past 10)."""
    return np.array([[1 / q["first"] if q["first"] else 0.0 for q in first_hits(records, w)] for w in settings])


def choose(rr: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> int:
    """The setting whose worse set (mean reciprocal rank over the masked questions) is best; ties to the earliest."""
    worst = np.min([rr[name][:, masks[name]].mean(axis=1) for name in rr], axis=0)
    return int(np.argmax(worst))


def cross_validate(rr: dict[str, np.ndarray], settings: list[FusionWeights], seed: int = 0) -> dict:
    """Held-out reciprocal ranks, each fold's questions scored with the setting chosen on the other folds."""
    rng = np.random.default_rng(seed)
    folds = {name: rng.permutation(m.shape[1]) % FOLDS for name, m in rr.items()}
    held_out = {name: np.zeros(m.shape[1]) for name, m in rr.items()}
    chosen = []
    for k in range(FOLDS):
        best = choose(rr, {name: folds[name] != k for name in rr})
        chosen.append(settings[best])
        for name in rr:
            held_out[name][folds[name] == k] = rr[name][best, folds[name] == k]
    return {"held_out": held_out, "chosen": chosen}


def row(label: str, per_set: dict[str, dict | None]) -> str:
    cells = [" / ".join(f"{f[c]:.3f}" for c in ("hit@1", "hit@5", "mrr@10", "section@1", "highlight@1"))
             if f else "–" for f in per_set.values()]
    return f"| {label} | " + " | ".join(cells) + " |"


def main() -> None:
    sets = {name: records for name in ("dev", "qasper-train", "qasper") if (records := load_records(name))}
    print("| setting | " + " | ".join(f"{n} h1 / h5 / mrr / sec / hl" for n in sets) + " |")
    print("|---|" + "---|" * len(sets))
    today = TODAY
    print(row("today's fusion", {n: figures(first_hits(r, today)) for n, r in sets.items()}), flush=True)
    print(row("+ MaxSim 0.3, int8 pruned of stop words", {
        n: figures(first_hits(r, FusionWeights(maxsim=0.3), "int8-pruned")) if "int8-pruned" in r[0]["maxsim"]
        else None for n, r in sets.items()}), flush=True)
    for variant in ("float", "int8", "pca128", "pca96", "pca64"):
        for m in (0.2, 0.3, 0.5):
            print(row(f"+ MaxSim {m}, {variant}", {n: figures(first_hits(r, FusionWeights(maxsim=m), variant))
                                                   for n, r in sets.items()}))
    settings = grid()
    rr = {name: reciprocal_ranks(sets[name], settings) for name in FIT_SETS if name in sets}
    cv = cross_validate(rr, settings)
    best = settings[choose(rr, {name: np.ones(m.shape[1], bool) for name, m in rr.items()})]
    print()
    print("cross-validated mrr@10 (held-out folds):",
          {name: round(float(v.mean()), 3) for name, v in cv["held_out"].items()})
    print("today's mrr@10:", {name: round(float(rr[name][settings.index(TODAY)].mean()), 3)
                              for name in rr})
    print("chosen per fold:", cv["chosen"])
    print("chosen on all:", best)
    print(row("chosen", {n: figures(first_hits(r, best)) for n, r in sets.items()}))
    for name, records in sets.items():
        before = {q["id"]: q["first"] for q in first_hits(records, today)}
        after = {q["id"]: q["first"] for q in first_hits(records, best)}
        gained = sorted(i for i in before if after[i] == 1 and before[i] != 1)
        lost = sorted(i for i in before if before[i] == 1 and after[i] != 1)
        print(f"{name}: first place gained {len(gained)} {gained[:12]}, lost {len(lost)} {lost[:12]}")


if __name__ == "__main__":
    main()
