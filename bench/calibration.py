"""The confidence's calibration from the cached signals (bench/ranking_signals.py): Brier score, reliability, and
what the answerable threshold does, per set, fitted by cross-validation within a set or on another set.

    python bench/calibration.py
    python bench/calibration.py --save qasper-train eval/qasper/calibration-qasper-train.json
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ranking_signals import ARTIFACTS

from qa.confidence import (
    FEATURES,
    brier,
    calibrate,
    fit_logistic,
    probabilities,
    reliability,
)
from qa.fusion import FusionWeights, fused_order


def examples(name: str, weights: FusionWeights = FusionWeights()) -> tuple[np.ndarray, np.ndarray] | None:
    """(questions x FEATURES) signals of each question's top result under `weights`, and its label."""
    path = ARTIFACTS / f"signals-{name}.pkl"
    if not path.exists():
        return None
    with open(path, "rb") as f:
        records = pickle.load(f)["records"]
    rows, labels = [], []
    for r in records:
        signals = {"passage": r["passage"], "sentence": r["sentence"], "section": r["section"], "bm25": r["bm25"],
                   "maxsim": r["maxsim"]["int8"]}
        top = fused_order(signals, weights)[0]
        named = {"top_sentence": r["sentence"][top], "top_passage": r["passage"][top]}
        rows.append([named[f] for f in FEATURES])
        labels.append(r["answerable"])
    return np.array(rows), np.array(labels)


def summary(label: str, p: np.ndarray, y: np.ndarray, threshold: float) -> None:
    said = p >= threshold
    print(f"| {label} | {len(y)} ({(~y).sum()}) | {brier(p, y):.3f} | {brier(np.full(len(y), y.mean()), y):.3f} | "
          f"{said[y].mean():.3f} | {(~said[~y]).mean() if (~y).any() else float('nan'):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--save", nargs=2, metavar=("SET", "FILE"),
                        help="write SET's calibration (fitted on all of it) as `qa tune` saves one, for --calibration")
    args = parser.parse_args()
    sets = {name: data for name in ("dev", "qasper-train", "qasper") if (data := examples(name))}
    if args.save:
        calibration, _ = calibrate(*sets[args.save[0]])
        Path(args.save[1]).write_text(json.dumps(calibration.as_dict(), indent=1) + "\n", encoding="utf-8")
    print("| set (how fitted) | questions (unanswerable) | Brier | Brier of the base rate | answerable_recall | "
          "unanswerable_rejected |")
    print("|---|---|---|---|---|---|")
    tables = {}
    for name, (x, y) in sets.items():
        if name == "qasper":
            continue
        calibration, p = calibrate(x, y)
        summary(f"{name} (cross-validated on itself)", p, y, calibration.threshold)
        tables[name] = reliability(p, y)
        for other in ("qasper",) + (("dev",) if name != "dev" else ()):
            if other in sets:
                xo, yo = sets[other]
                po = probabilities(xo, *fit_logistic(x, y))
                summary(f"{other} (fitted on {name})", po, yo, calibration.threshold)
    for name, rows in tables.items():
        print(f"\nreliability, {name}, cross-validated:\n")
        print("| confidence | questions | mean confidence | share the document answers |")
        print("|---|---|---|---|")
        for row in rows:
            print(f"| {row['bin']} | {row['questions']} | {row['mean_confidence']:.2f} | {row['answered']:.2f} |")


if __name__ == "__main__":
    main()
