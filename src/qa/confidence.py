"""A calibrated confidence: the probability that the documents answer a question, from the ranking's signals.

A logistic model over a few signals of the top result. It is calibrated by cross-validation on labelled questions
of the same kind as the corpus: the shipped numbers below on the bundled paper's dev set (`bench/fusion.py`
reproduces them, docs/retrieval.md shows the reliability table), an operator's through `qa tune`. A response is
`answerable` when its confidence reaches the threshold, chosen under cross-validation to keep `TARGET_RECALL` of
the answerable questions answerable, midway between the lowest of them and the unanswerable question just below.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .rankers import Weights

# The signals the model reads, by name (`Searcher.confidence_signals`): the top passage's best sentence cosine alone
# calibrated best on dev under cross-validation (docs/retrieval.md); adding the passage cosine or MaxSim did not help.
FEATURES = ("top_sentence",)
SIGNALS = ("top_sentence", "top_passage")  # every signal a calibration may use
INTERCEPT = -6.0158
COEFFICIENTS = (13.0612,)
THRESHOLD = 0.4971
TARGET_RECALL = 1.0  # keep every answerable question of the labelled set answerable
L2 = 1.0  # ridge penalty on the standardised coefficients: a handful of unanswerable examples must not overfit
FOLDS = 5
REPEATS = 5


@dataclass(frozen=True)
class Calibration:
    """P(answers) = 1 / (1 + exp(-(intercept + coefficients · features)))."""

    intercept: float = INTERCEPT
    coefficients: tuple[float, ...] = COEFFICIENTS
    threshold: float = THRESHOLD
    features: tuple[str, ...] = FEATURES

    def confidence(self, signals: dict[str, float]) -> float:
        z = self.intercept + sum(c * signals[f] for c, f in zip(self.coefficients, self.features))
        return float(1 / (1 + np.exp(-z)))

    def as_dict(self) -> dict:
        return {
            "intercept": self.intercept,
            "coefficients": list(self.coefficients),
            "threshold": self.threshold,
            "features": list(self.features),
        }


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2, steps: int = 50) -> tuple[float, np.ndarray]:
    """Intercept and coefficients of an L2-penalised logistic regression (Newton's method on standardised
    features, the penalty sparing the intercept), returned on the original scale."""
    mean, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / sd])
    w = np.zeros(z.shape[1])
    penalty = np.diag([0.0] + [l2] * x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ w))
        gradient = z.T @ (p - y) + penalty @ w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + penalty + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    coefficients = w[1:] / sd
    return float(w[0] - coefficients @ mean), coefficients


def probabilities(x: np.ndarray, intercept: float, coefficients: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(intercept + x @ coefficients)))


def cross_validated(x: np.ndarray, y: np.ndarray, folds: int = FOLDS, repeats: int = REPEATS) -> np.ndarray:
    """Each question's probability from models fitted without its fold (folds stratified by label), averaged over
    `repeats` seeded splits: with a dozen unanswerable questions one split's threshold is noisy."""
    p = np.zeros(len(y))
    for seed in range(repeats):
        rng = np.random.default_rng(seed)
        fold = np.empty(len(y), dtype=np.int64)
        for label in (False, True):
            where = np.flatnonzero(y == label)
            fold[rng.permutation(where)] = np.arange(len(where)) % folds
        for k in range(folds):
            intercept, coefficients = fit_logistic(x[fold != k], y[fold != k])
            p[fold == k] += probabilities(x[fold == k], intercept, coefficients) / repeats
    return p


def recall_threshold(p: np.ndarray, y: np.ndarray, recall: float = TARGET_RECALL) -> float:
    """A threshold that at least `recall` of the answerable questions reach: midway between the lowest of those and
    the highest unanswerable question below it, the most margin on both sides (that one, with none below it)."""
    answerable = np.sort(p[y])
    lowest_kept = float(answerable[int(np.floor((1 - recall) * len(answerable) + 1e-9))])
    below = p[~y][p[~y] < lowest_kept]
    return (lowest_kept + float(below.max())) / 2 if below.size else lowest_kept


def calibrate(x: np.ndarray, y: np.ndarray, features: Sequence[str] = FEATURES) -> tuple[Calibration, np.ndarray]:
    """The model fitted on every question, with the threshold from cross-validated probabilities (also returned)."""
    p = cross_validated(x, y)
    intercept, coefficients = fit_logistic(x, y)
    return Calibration(
        round(intercept, 4),
        tuple(round(float(c), 4) for c in coefficients),
        math.floor(recall_threshold(p, y) * 1e4) / 1e4,
        tuple(features),
    ), p  # rounded down


def brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(((p - y) ** 2).mean())


def reliability(p: np.ndarray, y: np.ndarray, edges: Sequence[float] = (0, 0.2, 0.4, 0.6, 0.8, 1.0)) -> list[dict]:
    """Per confidence bin: how many questions, their mean confidence, and the share the document answers."""
    rows = []
    for low, high in itertools.pairwise(edges):
        inside = (p >= low) & ((p < high) if high < 1 else (p <= high))
        if inside.any():
            rows.append(
                {
                    "bin": f"{low:.1f}–{high:.1f}",
                    "questions": int(inside.sum()),
                    "mean_confidence": float(p[inside].mean()),
                    "answered": float(y[inside].mean()),
                }
            )
    return rows


CALIBRATION_FILE = "calibration.json"  # in the index folder, beside `builds/`: written by `qa tune`


def load_calibration(folder: Path, name: str = CALIBRATION_FILE) -> Calibration:
    """The calibration `qa tune` saved in this (index) folder, else the shipped one; ValueError if unreadable."""
    path = folder / name
    if not path.is_file():
        return Calibration()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        calibration = Calibration(
            float(data["intercept"]),
            tuple(float(c) for c in data["coefficients"]),
            float(data["threshold"]),
            tuple(data["features"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a calibration saved by `qa tune` ({exc})") from exc
    if len(calibration.coefficients) != len(calibration.features) or not set(calibration.features) <= set(SIGNALS):
        raise ValueError(f"{path}: coefficients must match features, which must be among {', '.join(SIGNALS)}")
    return calibration


def load_weights(folder: Path, name: str = CALIBRATION_FILE) -> Weights:
    """The ranking weights `qa tune` saved with the calibration, else the shipped ones."""
    path = folder / name
    if not path.is_file():
        return Weights()
    saved = json.loads(path.read_text(encoding="utf-8")).get("weights")
    if not saved:
        return Weights()
    return Weights(passage=float(saved["passage"]), section=float(saved["section"]), dense=float(saved["dense"]))
