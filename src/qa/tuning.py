"""Fitting the answerability calibration to labelled questions (`qa tune`): before and after figures.

Every question is asked as the service asks it; the confidence signals of its top result, and whether it has
evidence, make one example. The calibration is refitted on them (`confidence.calibrate`, cross-validated), and
the figures of the current and the refitted calibration are computed on the same questions (the refitted one's
from its cross-validated probabilities, so that they are not flattered by fitting).
"""

from __future__ import annotations

import numpy as np

from .confidence import Calibration, brier, calibrate, probabilities, reliability
from .search import Searcher, validate


def question_signals(searcher: Searcher, items: list[dict], features: tuple[str, ...]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(questions x features) confidence signals and whether each question is answerable (has evidence)."""
    rows, labels = [], []
    for item in items:
        query, _, document = validate(item["question"], 1, item.get("document"), searcher.index.documents)
        *_, signals = searcher.prepare(query, document)
        rows.append([signals[f] for f in features])
        labels.append(bool(item.get("evidence")))
    return np.array(rows, dtype=np.float64), np.array(labels, dtype=bool)


def figures(p: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    said = p >= threshold
    return {"brier": round(brier(p, y), 4),
            "answerable_recall": round(float(said[y].mean()), 3) if y.any() else None,
            "unanswerable_rejected": round(float((~said[~y]).mean()), 3) if (~y).any() else None}


def tune(searcher: Searcher, items: list[dict]) -> dict:
    """The refitted calibration and the figures before (current calibration) and after (cross-validated)."""
    current = searcher.calibration
    x, y = question_signals(searcher, items, current.features)
    if y.all() or not y.any():
        raise ValueError("tuning needs both answerable questions (with evidence) and unanswerable ones (without)")
    before = probabilities(x, current.intercept, np.array(current.coefficients))
    refitted, cross_validated = calibrate(x, y, current.features)
    return {"calibration": refitted, "before": figures(before, y, searcher.threshold),
            "after": figures(cross_validated, y, refitted.threshold),
            "reliability": reliability(cross_validated, y), "questions": len(y), "unanswerable": int((~y).sum())}


def shipped_calibration(searcher: Searcher, items: list[dict]) -> Calibration:
    """The calibration the bundled document's dev set gives (what `confidence.py` ships)."""
    return tune(searcher, items)["calibration"]
