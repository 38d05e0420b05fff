"""What a ranker sees of the candidate passages, what it returns, and the tunable weights of today's rankers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

# The dense signal of a passage, shared by today's rankers (docs/retrieval.md, bench/retrieval.py):
#   dense = PASSAGE_WEIGHT * cos(q, passage) + (1 - PASSAGE_WEIGHT) * max cos(q, sentence of passage)
#           + SECTION_WEIGHT * cos(q, centroid of the passage's section)
PASSAGE_WEIGHT = 0.5
SECTION_WEIGHT = 0.2
DENSE_WEIGHT = 0.6  # the dense signal's share in the weighted z-score fusion (`zscore.WeightedZScore`)


@dataclass(frozen=True)
class Weights:
    """The ranking's tunable constants (defaults above); other values serve the measured variants (bench/).

    `fusion` names the ranker in `rankers.RANKERS`.
    """

    passage: float = PASSAGE_WEIGHT
    section: float = SECTION_WEIGHT
    dense: float = DENSE_WEIGHT
    fusion: str = "zscore"


@dataclass(frozen=True)
class Features:
    """The signals of one question's candidate passages, one entry per candidate, all in the same order."""

    query: str
    chunks: np.ndarray  # chunk ids
    passage: np.ndarray  # cos(question, passage)
    sentence: np.ndarray  # best cos(question, sentence of the passage), each sentence embedded alone
    section: np.ndarray  # cos(question, centroid of the passage's section)
    lexical: np.ndarray  # BM25 score of the passage (within the searched scope)


class Ranker(Protocol):
    """Scores candidate passages: higher is better. The search orders them by this score (stable on ties)."""

    def score(self, features: Features) -> np.ndarray: ...


def dense_signal(features: Features, weights: Weights) -> np.ndarray:
    """The weighted sum of the three cosines (see the constants above)."""
    return (
        weights.passage * features.passage
        + (1 - weights.passage) * features.sentence
        + weights.section * features.section
    )
