"""Late interaction (ColBERT's MaxSim) over the encoder's token states, stored compactly.

MaxSim scores a passage by the mean, over the question's tokens, of each token's best cosine to any token of the
passage, with the encoder's last hidden states, each normalised; `[CLS]`, `[SEP]` and padding are left out. The
question's token states are a by-product of the pass that makes its vector. A passage's are made at build time and
stored as int8 with one scale per token vector (MaxSim changes by about 0.002), optionally pruned of punctuation and
stop-word tokens, which carry little of what a question matches and take about a third of a passage's tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .lexical import STOPWORDS


@dataclass(frozen=True)
class TokenStates:
    """Token vectors of many passages, one after another: passage i's rows are `offsets[i]:offsets[i + 1]`.

    `tokens` is float32 (unit vectors) or int8, in which case row r stands for `tokens[r] * scales[r]`.
    """

    tokens: np.ndarray
    offsets: np.ndarray
    scales: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return self.tokens.nbytes + self.offsets.nbytes + (0 if self.scales is None else self.scales.nbytes)


def kept_tokens(tokens: Sequence[str], offsets: Sequence[tuple[int, int]], prune: bool) -> np.ndarray:
    """Positions of the tokens MaxSim uses: every real token (not `[CLS]`, `[SEP]`, padding), and with `prune`
    none that is punctuation or a whole stop word, unless that would leave none."""
    real = [i for i, (start, end) in enumerate(offsets) if end > start]
    if not prune:
        return np.array(real, dtype=np.int64)
    content = [i for i in real if any(ch.isalnum() for ch in tokens[i]) and tokens[i] not in STOPWORDS]
    return np.array(content or real, dtype=np.int64)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), dtype=np.float32)


def query_token_states(hidden: np.ndarray, encoding) -> np.ndarray:
    """A question's normalised token states (tokens x dim) from its encoder pass (`hidden`: tokens x dim)."""
    return normalize_rows(hidden[kept_tokens(encoding.tokens, encoding.offsets, prune=False)])


def passage_token_states(embedder, texts: Sequence[str], prune: bool, batch_size: int = 16) -> TokenStates:
    """Normalised float32 token states of every text, through `embedder._run` (an `OnnxEmbedder`)."""
    parts, counts = [], []
    for i in range(0, len(texts), batch_size):
        hidden, _, encodings = embedder._run(texts[i : i + batch_size])
        for row, encoding in enumerate(encodings):
            keep = kept_tokens(encoding.tokens, encoding.offsets, prune)
            parts.append(normalize_rows(hidden[row][keep]))
            counts.append(len(keep))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return TokenStates(np.concatenate(parts), offsets)


def projection(states: TokenStates, dimensions: int) -> np.ndarray:
    """(dim x dimensions) basis of the token states' main directions (right singular vectors, not centred:
    cosines are taken about the origin)."""
    sample = states.tokens[:: max(1, len(states.tokens) // 50000)]
    _, _, vt = np.linalg.svd(sample.astype(np.float32), full_matrices=False)
    return np.ascontiguousarray(vt[:dimensions].T, dtype=np.float32)


def project(states: TokenStates, basis: np.ndarray) -> TokenStates:
    """The token states in the reduced basis, renormalised."""
    return TokenStates(normalize_rows(states.tokens @ basis), states.offsets)


def compress(states: TokenStates) -> TokenStates:
    """int8 with one scale per token vector: `scale = max |x| / 127`, the vector rounded to multiples of it."""
    scales = np.maximum(np.abs(states.tokens).max(axis=1), 1e-12) / 127.0
    quantised = np.round(states.tokens / scales[:, None]).astype(np.int8)
    return TokenStates(quantised, states.offsets, scales.astype(np.float32))


def maxsim_scores(query_tokens: np.ndarray, states: TokenStates, passages: np.ndarray) -> np.ndarray:
    """MaxSim of the question against each of `passages` (ids into `states`), float32."""
    starts, ends = states.offsets[passages], states.offsets[passages + 1]
    counts = ends - starts
    group_starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows = np.repeat(starts - group_starts, counts) + np.arange(counts.sum())
    similarities = states.tokens[rows].astype(np.float32) @ query_tokens.T  # (passage tokens, question tokens)
    if states.scales is not None:
        similarities *= states.scales[rows, None]
    best = np.maximum.reduceat(similarities, group_starts, axis=0)  # (passages, question tokens)
    return best.mean(axis=1)
