"""Fitting the ranking's weights and the answerability calibration to labelled questions (`qa tune`).

Weights: every answerable question is ranked under each setting of a small grid (`WEIGHT_GRID`, the question
encoded once); a setting is chosen by mean reciprocal rank on four fifths of the questions and scored on the
fifth left out, in turn, so that the "after" figure is cross-validated; the weights chosen on all questions are
kept only when that cross-validated figure beats the current weights', else the current ones stay.

Calibration: every question is asked as the service asks it, under the kept weights; the confidence signals of
its top result and whether it has evidence make one example; the calibration is refitted on them
(`confidence.calibrate`), and its figures are its cross-validated ones, not flattered by fitting.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict

import numpy as np

from .confidence import brier, calibrate, probabilities, reliability
from .evaluation import evidence_spans, hit_flags
from .search import Searcher, Weights, validate

WEIGHT_GRID = [
    Weights(passage=p, section=s, dense=d)
    for p, s, d in itertools.product((0.3, 0.5, 0.7), (0.0, 0.1, 0.2, 0.3), (0.4, 0.5, 0.6, 0.7))
]
FOLDS = 5


def reciprocal_ranks(searcher: Searcher, items: list[dict], grid: list[Weights], shorter: bool) -> np.ndarray:
    """(settings x answerable questions) 1 / rank of the first passage hitting the evidence (0 past 10)."""
    current = searcher.weights
    columns = []
    try:
        for item in items:
            if not item.get("evidence"):
                continue
            query, _, document = validate(item["question"], 1, item.get("document"), searcher.index.documents)
            corrected = searcher.speller.correct(query).corrected
            query_vector = searcher.embedder.encode([corrected])[0]
            doc = searcher.index.documents[document] if document else next(iter(searcher.index.documents.values()))
            spans = evidence_spans(doc.text, item)
            column = []
            for weights in grid:
                searcher.weights = weights
                chunks = searcher.rank(corrected, query_vector, document).chunks[:10]
                ranks = [
                    r
                    for r, c in enumerate(chunks, 1)
                    if any(
                        hit_flags(
                            {"start": searcher.index.chunks[c].start, "end": searcher.index.chunks[c].end},
                            spans,
                            shorter,
                            None,
                        )
                    )
                ]
                column.append(1 / ranks[0] if ranks else 0.0)
            columns.append(column)
    finally:
        searcher.weights = current
    return np.array(columns).T


def choose_weights(rr: np.ndarray, folds: int = FOLDS, seed: int = 0) -> tuple[int, np.ndarray]:
    """The setting best on all questions, and each question's reciprocal rank under the setting chosen without
    its fold."""
    fold = np.random.default_rng(seed).permutation(rr.shape[1]) % folds
    held_out = np.zeros(rr.shape[1])
    for k in range(folds):
        held_out[fold == k] = rr[int(np.argmax(rr[:, fold != k].mean(axis=1))), fold == k]
    return int(np.argmax(rr.mean(axis=1))), held_out


def ranking_figures(rr: np.ndarray) -> dict:
    return {"hit@1": round(float((rr == 1).mean()), 3), "mrr@10": round(float(rr.mean()), 3)}


def question_signals(searcher: Searcher, items: list[dict], features: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
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
    return {
        "brier": round(brier(p, y), 4),
        "answerable_recall": round(float(said[y].mean()), 3) if y.any() else None,
        "unanswerable_rejected": round(float((~said[~y]).mean()), 3) if (~y).any() else None,
    }


def tune(searcher: Searcher, items: list[dict], shorter: bool = False, weights: bool = True) -> dict:
    """The kept weights and refitted calibration, with figures before (current) and after (cross-validated).

    `shorter`: evidence given as whole paragraphs (`qa eval --paragraph-evidence`). `weights=False` keeps the
    current weights without trying others.
    """
    labels = [bool(item.get("evidence")) for item in items]
    if all(labels) or not any(labels):
        raise ValueError("tuning needs both answerable questions (with evidence) and unanswerable ones (without)")
    result: dict = {"questions": len(items), "unanswerable": labels.count(False)}
    current = searcher.calibration
    x, y = question_signals(searcher, items, current.features)
    before = figures(probabilities(x, current.intercept, np.array(current.coefficients)), y, searcher.threshold)
    kept = searcher.weights
    if weights:
        grid = [kept] + [w for w in WEIGHT_GRID if w != kept]
        rr = reciprocal_ranks(searcher, items, grid, shorter)
        best, held_out = choose_weights(rr)
        before |= ranking_figures(rr[0])
        improved = held_out.mean() > rr[0].mean()
        kept = grid[best] if improved else kept
        result["weights"] = kept
        result["after_ranking"] = ranking_figures(held_out if improved else rr[0])
    previous = searcher.weights
    searcher.weights = kept
    try:
        x, y = question_signals(searcher, items, current.features)
    finally:
        searcher.weights = previous
    refitted, cross_validated = calibrate(x, y, current.features)
    after = figures(cross_validated, y, refitted.threshold) | result.pop("after_ranking", {})
    return result | {
        "calibration": refitted,
        "before": before,
        "after": after,
        "reliability": reliability(cross_validated, y),
    }


def saved_form(result: dict) -> dict:
    """What `qa tune` writes: the calibration, and the weights when they were tuned."""
    weights = result.get("weights")
    return result["calibration"].as_dict() | (
        {"weights": {k: v for k, v in asdict(weights).items() if k != "fusion"}} if weights else {}
    )
