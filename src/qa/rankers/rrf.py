"""Reciprocal rank fusion of the dense and lexical signals: the measured alternative (bench/retrieval.py)."""

from __future__ import annotations

import numpy as np

from .base import Features, Weights, dense_signal

RRF_K = 60  # sum of 1 / (RRF_K + rank), rank counted from 1


def reciprocal_rank_fusion(*scores: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """Sum over rankers of 1 / (k + rank), rank 1 for each ranker's best candidate."""
    fused = np.zeros(len(scores[0]), dtype=np.float64)
    for s in scores:
        ranks = np.empty(len(s), dtype=np.int64)
        ranks[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)
        fused += 1.0 / (k + ranks)
    return fused


class ReciprocalRankFusion:
    def __init__(self, weights: Weights) -> None:
        self.weights = weights

    def score(self, features: Features) -> np.ndarray:
        return reciprocal_rank_fusion(dense_signal(features, self.weights), features.lexical)
