"""Today's ranker: the weighted sum of the z-scored dense and lexical signals over the candidate set.

Measured against reciprocal rank fusion and kept because it won on both evaluation sets (docs/retrieval.md).
"""

from __future__ import annotations

import numpy as np

from .base import DENSE_WEIGHT, Features, Weights, dense_signal


def zscore(values: np.ndarray) -> np.ndarray:
    sd = float(values.std())
    return (values - values.mean()) / sd if sd > 0 else np.zeros_like(values)


def weighted_fusion(dense: np.ndarray, lexical: np.ndarray, dense_weight: float = DENSE_WEIGHT) -> np.ndarray:
    """Weighted sum of z-scored dense and lexical scores over one candidate set."""
    return dense_weight * zscore(dense) + (1 - dense_weight) * zscore(lexical)


class WeightedZScore:
    def __init__(self, weights: Weights) -> None:
        self.weights = weights

    def score(self, features: Features) -> np.ndarray:
        return weighted_fusion(dense_signal(features, self.weights), features.lexical, self.weights.dense)
