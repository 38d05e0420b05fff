"""Searching: hybrid (dense + BM25) ranking of passages, the answering sentence marked, and answerability.

Knows nothing of Flask or click: `Searcher.search` takes a question and returns the JSON-ready response that the
API, the web page, the CLI and the evaluation all share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import faiss
import numpy as np

from .embedding import Embedder
from .index import Index
from .lexical import LexicalIndex, tokenize

MAX_QUERY_CHARS = 1000
MAX_K = 50
DEFAULT_K = 5
CANDIDATES = 50  # passages taken from each ranker before fusion

# Fusion: score = DENSE_WEIGHT * dense' + (1 - DENSE_WEIGHT) * lexical', each min-max normalised over the candidates.
DENSE_WEIGHT = 0.6
# Reciprocal rank fusion, measured against the weighted sum: 1 / (RRF_K + rank), rank counted from 1.
RRF_K = 60
# Answerability: the best passage's dense cosine must reach this (QA_ANSWERABLE_THRESHOLD overrides).
ANSWERABLE_THRESHOLD = 0.45


class QueryError(ValueError):
    """A question or parameter the service cannot accept; `code` is the API's stable error code."""

    def __init__(self, message: str, code: str = "invalid_parameter") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def validate(query: object, k: object = DEFAULT_K, document: object = None,
             documents: dict | None = None) -> tuple[str, int, str | None]:
    """Check a question and its parameters; return them cleaned, or raise QueryError."""
    if not isinstance(query, str):
        raise QueryError("q must be a string")
    query = query.strip()
    if not query:
        raise QueryError("q must not be empty")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(f"q must be at most {MAX_QUERY_CHARS} characters")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise QueryError(f"k must be an integer from 1 to {MAX_K}")
    if document is not None:
        if not isinstance(document, str) or (documents is not None and document not in documents):
            raise QueryError(f"unknown document: {document!r}")
    return query, k, document


def minmax(values: np.ndarray) -> np.ndarray:
    span = float(values.max() - values.min()) if len(values) else 0.0
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def weighted_fusion(dense: np.ndarray, lexical: np.ndarray, dense_weight: float = DENSE_WEIGHT) -> np.ndarray:
    """Weighted sum of min-max normalised scores over one candidate set."""
    return dense_weight * minmax(dense) + (1 - dense_weight) * minmax(lexical)


def reciprocal_rank_fusion(*scores: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """Sum over rankers of 1 / (k + rank), rank 1 for each ranker's best candidate."""
    fused = np.zeros(len(scores[0]), dtype=np.float64)
    for s in scores:
        ranks = np.empty(len(s), dtype=np.int64)
        ranks[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)
        fused += 1.0 / (k + ranks)
    return fused


@dataclass(frozen=True)
class Scored:
    chunk: int
    score: float


class Searcher:
    def __init__(self, index: Index, embedder: Embedder, answerable_threshold: float | None = None) -> None:
        self.index = index
        self.embedder = embedder
        self.lexical = LexicalIndex([c.text for c in index.chunks])
        self.threshold = ANSWERABLE_THRESHOLD if answerable_threshold is None else answerable_threshold

    def _dense_candidates(self, query_vector: np.ndarray, scope: tuple[int, int]) -> np.ndarray:
        first, last = scope
        n = min(CANDIDATES, last - first)
        params = None
        if (first, last) != (0, len(self.index.chunks)):
            params = faiss.SearchParameters(sel=faiss.IDSelectorRange(first, last))
        _, ids = self.index.faiss_index.search(query_vector[None, :], n, params=params)
        return ids[0][ids[0] >= 0]

    def rank(self, query: str, query_vector: np.ndarray, document: str | None = None) -> tuple[list[Scored], dict]:
        """Every candidate passage in fused order, and the signals the answerability decision uses."""
        scope = self.index.document_ranges[document] if document else (0, len(self.index.chunks))
        terms = tokenize([query])[0]
        lexical_all = self.lexical.scores(terms)[scope[0]:scope[1]]
        n = min(CANDIDATES, len(lexical_all))
        lexical_top = scope[0] + np.argpartition(-lexical_all, n - 1)[:n]
        candidates = np.union1d(self._dense_candidates(query_vector, scope), lexical_top)
        dense = self.index.vectors[candidates] @ query_vector
        lexical = lexical_all[candidates - scope[0]]
        fused = weighted_fusion(dense, lexical)
        order = np.argsort(-fused, kind="stable")
        ranked = [Scored(int(candidates[i]), float(fused[i])) for i in order]
        unknown = [t for t in terms if t not in self.lexical.vocabulary]
        signals = {
            "dense_top": float(dense.max()),
            "lexical_top": float(lexical.max()),
            "unknown_terms": len(unknown) / len(terms) if terms else 1.0,
        }
        return ranked, signals

    def highlight(self, chunk_id: int, query_vector: np.ndarray) -> list[dict]:
        """The sentence of the passage closest to the question."""
        first, last = self.index.sentence_offsets[chunk_id], self.index.sentence_offsets[chunk_id + 1]
        sims = self.index.sentence_vectors[first:last] @ query_vector
        start, end = self.index.chunks[chunk_id].sentences[int(np.argmax(sims))]
        return [{"start": start, "end": end}]

    def search(self, query: str, k: int = DEFAULT_K, document: str | None = None) -> dict:
        began = time.perf_counter()
        query, k, document = validate(query, k, document, self.index.documents)
        query_vector = self.embedder.encode([query])[0]
        ranked, signals = self.rank(query, query_vector, document)
        results = []
        for rank, scored in enumerate(ranked[:k], start=1):
            c = self.index.chunks[scored.chunk]
            results.append({
                "rank": rank, "score": round(scored.score, 4), "document": c.document,
                "document_title": c.document_title, "section": c.section, "chunk": c.chunk,
                "paragraph": c.paragraph, "start": c.start, "end": c.end, "text": c.text,
                "highlights": self.highlight(scored.chunk, query_vector),
            })
        return {
            "query": query,
            "answerable": signals["dense_top"] >= self.threshold,
            "took_ms": round((time.perf_counter() - began) * 1000, 2),
            "results": results,
            "index": {"built_at": self.index.manifest["built_at"], "model": self.index.manifest["model"]["id"],
                      "chunks": self.index.manifest["chunks"]},
        }
