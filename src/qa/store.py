"""The passage store seam: what a search asks of the stored passages, whatever holds them.

Passages are numbered (chunk ids) in document order, each document's passages contiguous, as in `Index.chunks`.
Today's store is `faiss_store.FaissBm25Store` (a loaded build: FAISS and numpy for vectors, BM25 postings); a
store backed by a search engine or a database implements the same few operations.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class PassageStore(Protocol):
    def scope(self, document: str | None) -> tuple[int, int]:
        """The chunk id range [first, last) of one document, or of every passage for None."""
        ...

    def dense_candidates(self, query_vector: np.ndarray, scope: tuple[int, int], n: int) -> np.ndarray:
        """Chunk ids of (up to) the `n` passages of `scope` nearest to the question's vector."""
        ...

    def lexical_candidates(
        self, query: str, document: str | None, n: int, dense: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The (up to) `n` passages of the scope of `document` (all passages for None) with the highest BM25, joined
        with the chunk ids `dense`: the union's chunk ids in ascending order, and the BM25 score of each.

        Within one document the word statistics are that document's alone, so that a search within it ranks
        exactly as if it were the only document stored; the scores are exact, the choice of the top `n` over every
        passage may be approximate (a store says how).
        """
        ...

    def passage_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        """cos(question, passage) of each of `chunks`."""
        ...

    def best_sentence_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        """The best cos(question, sentence) within each of `chunks`, each sentence embedded alone."""
        ...

    def section_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        """cos(question, centroid of the passage's section) of each of `chunks`."""
        ...

    def highlight_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> list[np.ndarray]:
        """For each of `chunks` (a response's results): cos(question, sentence) of each of its sentences, each
        sentence read in its passage."""
        ...


def join_lexical_top(scores: np.ndarray, first: int, n: int, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`PassageStore.lexical_candidates` from the BM25 score of every passage of a scope starting at chunk `first`."""
    n = min(n, len(scores))
    candidates = np.union1d(dense, first + np.argpartition(-scores, n - 1)[:n])
    return candidates, scores[candidates - first]


def best_of_groups(similarities: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The best of each group of consecutive `similarities`, group i being the next `counts[i]` (at least one)."""
    return np.maximum.reduceat(similarities, np.concatenate([[0], np.cumsum(counts)[:-1]]))
