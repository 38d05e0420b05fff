"""Today's fusion extended by late interaction, over cached signals: what `bench/fusion.py` weighs.

    dense  = passage * cos(q, passage) + (1 - passage) * max cos(q, sentence) + section * cos(q, section centroid)
    fused  = dense_weight * z(dense) + (1 - dense_weight) * z(BM25)            z-scores over the candidates
    final  = fused + maxsim * z(MaxSim)   over the top `depth` candidates by `fused`, which stay above the rest

With `maxsim = 0` this is exactly `Searcher.rank`'s order (the service's weights are `search.Weights`, refitted
by `qa tune`). MaxSim lost first places on the research papers at every weight tried (docs/retrieval.md), so the
service does not use it yet; this module and `late_interaction.py` keep the measured form for a later round.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

PASSAGE = 0.5
SECTION = 0.2
DENSE = 0.6
MAXSIM = 0.0
DEPTH = 30  # candidates MaxSim re-scores: 30 reach the right passage for ~98% of dev questions


@dataclass(frozen=True)
class FusionWeights:
    passage: float = PASSAGE
    section: float = SECTION
    dense: float = DENSE
    maxsim: float = MAXSIM
    depth: int = DEPTH

    def as_dict(self) -> dict:
        return asdict(self)


def zscore(values: np.ndarray) -> np.ndarray:
    sd = float(values.std())
    return (values - values.mean()) / sd if sd > 0 else np.zeros_like(values)


def fused_scores(signals: dict[str, np.ndarray], weights: FusionWeights) -> np.ndarray:
    """`fused` above, for candidates given as arrays `passage`, `sentence`, `section`, `bm25`."""
    w = weights
    dense = w.passage * signals["passage"] + (1 - w.passage) * signals["sentence"] + w.section * signals["section"]
    return w.dense * zscore(dense) + (1 - w.dense) * zscore(signals["bm25"])


def rerank(fused: np.ndarray, maxsim: np.ndarray, weights: FusionWeights) -> tuple[np.ndarray, np.ndarray]:
    """The order of the top `depth` candidates (positions into `fused`) by `final`, and their final scores;
    `maxsim` holds MaxSim of those top candidates, in `fused` order."""
    top = np.argsort(-fused, kind="stable")[: weights.depth]
    final = fused[top] + weights.maxsim * zscore(maxsim)
    order = np.argsort(-final, kind="stable")
    return top[order], final[order]


def fused_order(signals: dict[str, np.ndarray], weights: FusionWeights) -> np.ndarray:
    """Every candidate's position, best first (MaxSim given for all candidates: the evaluation's form)."""
    fused = fused_scores(signals, weights)
    order = np.argsort(-fused, kind="stable")
    if weights.maxsim == 0:
        return order
    top, _ = rerank(fused, signals["maxsim"][order[: weights.depth]], weights)
    return np.concatenate([top, order[weights.depth :]])
