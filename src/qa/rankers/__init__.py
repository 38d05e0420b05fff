"""Rankers: how a search orders its candidate passages from their signals (`Features`).

To add one (a learned ranker, say): a module in this package with a class that takes the `Weights` and implements
`Ranker.score`, and one line in `RANKERS`; `Weights(fusion=<its name>)` then selects it.
"""

from __future__ import annotations

from typing import Callable

from .base import Features, Ranker, Weights
from .rrf import ReciprocalRankFusion
from .zscore import WeightedZScore

RANKERS: dict[str, Callable[[Weights], Ranker]] = {
    "zscore": WeightedZScore,
    "rrf": ReciprocalRankFusion,
}


def make_ranker(weights: Weights) -> Ranker:
    """The ranker `weights.fusion` names; ValueError for an unknown name."""
    try:
        return RANKERS[weights.fusion](weights)
    except KeyError:
        raise ValueError(f"unknown ranker {weights.fusion!r}: one of {', '.join(RANKERS)}") from None


__all__ = ["RANKERS", "Features", "Ranker", "Weights", "make_ranker"]
