"""Today's passage store: a loaded build (`index.Index`), searched with FAISS and numpy, BM25 from its postings."""

from __future__ import annotations

import numpy as np

from .index import Index, IndexUnavailable
from .lexical import Postings, tokenize
from .store import best_of_groups, join_lexical_top


class FaissBm25Store:
    """`store.PassageStore` over one loaded file build; everything a query needs was precomputed by the build and
    is mapped from its files (`index.load`), nothing is built here."""

    def __init__(self, index: Index) -> None:
        if index.postings is None or index.sections is None:
            raise IndexUnavailable(f"index at {index.path} has no BM25 postings or sections; run `qa build`")
        self.index = index
        self.postings: Postings = index.postings
        self.section_of, self.centroids = index.sections

    def scope(self, document: str | None) -> tuple[int, int]:
        return self.index.document_ranges[document] if document else (0, len(self.index.chunks))

    def dense_candidates(self, query_vector: np.ndarray, scope: tuple[int, int], n: int) -> np.ndarray:
        """The nearest passages by FAISS; within one document, exact scores over its contiguous chunk range
        (an approximate index filtered to a small range misses neighbours)."""
        first, last = scope
        n = min(n, last - first)
        if (first, last) != (0, len(self.index.chunks)):
            scores = self.index.vectors[first:last] @ query_vector
            return first + np.argpartition(-scores, n - 1)[:n]
        _, ids = self.index.faiss_index.search(query_vector[None, :], n)
        return ids[0][ids[0] >= 0]

    def lexical_scores(self, query: str, document: str | None) -> np.ndarray:
        """BM25 over the scope; within one document, with that document's statistics alone (`Postings.scores`)."""
        return self.postings.scores(tokenize([query])[0], *self.scope(document))

    def lexical_candidates(
        self, query: str, document: str | None, n: int, dense: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The exact top `n` by BM25 (every passage of the scope is scored), joined with `dense`."""
        return join_lexical_top(self.lexical_scores(query, document), self.scope(document)[0], n, dense)

    def passage_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        return self.index.vectors[chunks] @ query_vector

    def best_sentence_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        """The best sentence cosine of each passage (sentences of a passage are contiguous rows)."""
        offsets = self.index.sentence_offsets
        counts = offsets[chunks + 1] - offsets[chunks]
        group_starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        # row of each sentence: its passage's first row plus its position within the passage
        rows = np.repeat(offsets[chunks] - group_starts, counts) + np.arange(counts.sum())
        return best_of_groups(self.index.sentence_vectors[rows] @ query_vector, counts)

    def section_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        """The candidates' section centroids only: an archive has tens of thousands of sections."""
        return self.centroids[self.section_of[chunks]] @ query_vector

    def highlight_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> list[np.ndarray]:
        offsets = self.index.sentence_offsets
        return [self.index.highlight_vectors[offsets[c] : offsets[c + 1]] @ query_vector for c in chunks]
