"""Searching: hybrid (dense + BM25) ranking of passages, the answering sentence marked, and answerability.

Knows nothing of Flask or click: `Searcher.search` takes a question and returns the JSON-ready response that the
API, the web page, the CLI and the evaluation all share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .confidence import Calibration
from .embedding import Embedder
from .index import Index, embedded_text
from .lexical import STOPWORDS, LexicalIndex, tokenize
from .spelling import Correction, Speller

MAX_QUERY_CHARS = 1000
MAX_K = 50
DEFAULT_K = 5
CANDIDATES = 100  # passages taken from each ranker (dense via FAISS, BM25) before fusion

# Fusion, measured against reciprocal rank fusion and kept because it won on both evaluation sets
# (docs/retrieval.md, bench/retrieval.py):
#   dense   = PASSAGE_WEIGHT * cos(q, passage) + (1 - PASSAGE_WEIGHT) * max cos(q, sentence of passage)
#             + SECTION_WEIGHT * cos(q, centroid of the passage's section)
#   score   = DENSE_WEIGHT * z(dense) + (1 - DENSE_WEIGHT) * z(bm25), z-scores over the candidate set.
PASSAGE_WEIGHT = 0.5
SECTION_WEIGHT = 0.2
DENSE_WEIGHT = 0.6
# Reciprocal rank fusion, the measured alternative: sum of 1 / (RRF_K + rank), rank counted from 1.
RRF_K = 60
# Highlight: the best sentence, joined by an adjacent one scoring at least this share of it.
PAIR_RATIO = 0.9
# Answerability: `confidence.Calibration` turns the top result's signals into the probability that the documents
# answer; a response is answerable when it reaches the calibration's threshold (QA_ANSWERABLE_THRESHOLD overrides).


@dataclass(frozen=True)
class Weights:
    """The ranking's tunable constants (defaults above); other values serve the measured variants (bench/)."""

    passage: float = PASSAGE_WEIGHT
    section: float = SECTION_WEIGHT
    dense: float = DENSE_WEIGHT
    fusion: str = "zscore"  # or "rrf"


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
    if len(query) > MAX_QUERY_CHARS:  # before stripping: the limit is on what the client sent
        raise QueryError(f"q must be at most {MAX_QUERY_CHARS} characters")
    query = query.strip()
    if not query:
        raise QueryError("q must not be empty")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise QueryError(f"k must be an integer from 1 to {MAX_K}")
    if document is not None:
        if not isinstance(document, str) or (documents is not None and document not in documents):
            raise QueryError(f"unknown document: {document!r}")
    return query, k, document


def zscore(values: np.ndarray) -> np.ndarray:
    sd = float(values.std())
    return (values - values.mean()) / sd if sd > 0 else np.zeros_like(values)


def weighted_fusion(dense: np.ndarray, lexical: np.ndarray, dense_weight: float = DENSE_WEIGHT) -> np.ndarray:
    """Weighted sum of z-scored dense and lexical scores over one candidate set."""
    return dense_weight * zscore(dense) + (1 - dense_weight) * zscore(lexical)


def reciprocal_rank_fusion(*scores: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """Sum over rankers of 1 / (k + rank), rank 1 for each ranker's best candidate."""
    fused = np.zeros(len(scores[0]), dtype=np.float64)
    for s in scores:
        ranks = np.empty(len(s), dtype=np.int64)
        ranks[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)
        fused += 1.0 / (k + ranks)
    return fused


def best_sentences(similarities: np.ndarray, pair_ratio: float = PAIR_RATIO) -> tuple[int, int]:
    """Index range [first, last] of the best sentence, widened to a neighbour that scores nearly as well."""
    best = int(np.argmax(similarities))
    neighbours = [i for i in (best - 1, best + 1) if 0 <= i < len(similarities)]
    if neighbours:
        other = max(neighbours, key=lambda i: similarities[i])
        if similarities[other] >= pair_ratio * similarities[best] > 0:
            return min(best, other), max(best, other)
    return best, best


@dataclass(frozen=True)
class Ranking:
    """Candidate passages in fused order, with the per-candidate signals the response needs."""

    chunks: np.ndarray  # chunk ids, best first
    scores: np.ndarray  # fused scores, same order
    best_sentence: np.ndarray  # max sentence cosine of each, same order


class Searcher:
    """Answers questions over one loaded index; everything a query needs is precomputed here, once."""

    def __init__(self, index: Index, embedder: Embedder, answerable_threshold: float | None = None,
                 weights: Weights = Weights(), calibration: Calibration = Calibration()) -> None:
        self.index = index
        self.weights = weights
        self.embedder = embedder
        texts = [embedded_text(c) for c in index.chunks]
        self.lexical = LexicalIndex(texts)
        # BM25 statistics of each document alone, so that a search within one document ranks exactly as if it
        # were the only document indexed.
        self.lexical_by_document = {doc: LexicalIndex(texts[first:last]) if len(index.document_ranges) > 1
                                    else self.lexical for doc, (first, last) in index.document_ranges.items()}
        self.speller = Speller(texts, stopwords=STOPWORDS)
        self.calibration = calibration
        self.threshold = calibration.threshold if answerable_threshold is None else answerable_threshold
        self.section_of, self.centroids = section_centroids(index)

    def _dense_candidates(self, query_vector: np.ndarray, scope: tuple[int, int]) -> np.ndarray:
        """The nearest passages by FAISS; within one document, exact scores over its contiguous chunk range
        (an approximate index filtered to a small range misses neighbours)."""
        first, last = scope
        n = min(CANDIDATES, last - first)
        if (first, last) != (0, len(self.index.chunks)):
            scores = self.index.vectors[first:last] @ query_vector
            return first + np.argpartition(-scores, n - 1)[:n]
        _, ids = self.index.faiss_index.search(query_vector[None, :], n)
        return ids[0][ids[0] >= 0]

    def _max_sentence_similarity(self, candidates: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        """The best sentence cosine of each candidate passage (sentences of a passage are contiguous rows)."""
        offsets = self.index.sentence_offsets
        counts = offsets[candidates + 1] - offsets[candidates]
        group_starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        # row of each sentence: its passage's first row plus its position within the passage
        rows = np.repeat(offsets[candidates] - group_starts, counts) + np.arange(counts.sum())
        similarities = self.index.sentence_vectors[rows] @ query_vector
        return np.maximum.reduceat(similarities, group_starts)

    def rank(self, query: str, query_vector: np.ndarray, document: str | None = None) -> Ranking:
        """Candidates from both rankers, fused; see the constants at the top of this module."""
        scope = self.index.document_ranges[document] if document else (0, len(self.index.chunks))
        lexical = self.lexical_by_document[document] if document else self.lexical
        terms = tokenize([query])[0]
        lexical_all = lexical.scores(terms)
        n = min(CANDIDATES, len(lexical_all))
        lexical_top = scope[0] + np.argpartition(-lexical_all, n - 1)[:n]
        candidates = np.union1d(self._dense_candidates(query_vector, scope), lexical_top)
        passage = self.index.vectors[candidates] @ query_vector
        sentence = self._max_sentence_similarity(candidates, query_vector)
        section = (self.centroids @ query_vector)[self.section_of[candidates]]
        w = self.weights
        dense = w.passage * passage + (1 - w.passage) * sentence + w.section * section
        lexical_scores = lexical_all[candidates - scope[0]]
        if w.fusion == "rrf":
            fused = reciprocal_rank_fusion(dense, lexical_scores)
        else:
            fused = weighted_fusion(dense, lexical_scores, w.dense)
        order = np.argsort(-fused, kind="stable")
        return Ranking(candidates[order], fused[order], sentence[order])

    def highlight(self, chunk_id: int, query_vector: np.ndarray) -> list[dict]:
        """The sentence of the passage closest to the question (or two adjacent ones that answer together)."""
        first, last = self.index.sentence_offsets[chunk_id], self.index.sentence_offsets[chunk_id + 1]
        a, b = best_sentences(self.index.highlight_vectors[first:last] @ query_vector)
        sentences = self.index.chunks[chunk_id].sentences
        return [{"start": sentences[a][0], "end": sentences[b][1]}]

    def confidence_signals(self, ranking: Ranking, query_vector: np.ndarray) -> dict[str, float]:
        """What `Calibration` reads: the top passage's best sentence cosine and its own cosine (-1 without one)."""
        if not len(ranking.chunks):
            return {"top_sentence": -1.0, "top_passage": -1.0}
        top = int(ranking.chunks[0])
        return {"top_sentence": float(ranking.best_sentence[0]),
                "top_passage": float(self.index.vectors[top] @ query_vector)}

    def prepare(self, query: str, document: str | None = None
                ) -> tuple[Correction, np.ndarray, Ranking, dict[str, float]]:
        """A validated question's spelling correction, vector, ranking and confidence signals."""
        correction = self.speller.correct(query)  # words the corpus does not know, spelt as it does
        query_vector = self.embedder.encode([correction.corrected])[0]
        ranking = self.rank(correction.corrected, query_vector, document)
        return correction, query_vector, ranking, self.confidence_signals(ranking, query_vector)

    def search(self, query: str, k: int = DEFAULT_K, document: str | None = None) -> dict:
        began = time.perf_counter()
        query, k, document = validate(query, k, document, self.index.documents)
        correction, query_vector, ranking, signals = self.prepare(query, document)
        confidence = self.calibration.confidence(signals)
        results = []
        for rank, (chunk_id, score) in enumerate(zip(ranking.chunks[:k], ranking.scores[:k]), start=1):
            c = self.index.chunks[int(chunk_id)]
            results.append({
                "rank": rank, "score": round(float(score), 4), "document": c.document,
                "document_title": c.document_title, "section": c.section, "chunk": c.chunk,
                "paragraph": c.paragraph, "start": c.start, "end": c.end, "text": c.text,
                "highlights": self.highlight(int(chunk_id), query_vector),
            })
        return {
            "query": query,
            **({"corrected_query": correction.corrected} if correction.changed else {}),
            "answerable": bool(len(ranking.chunks)) and confidence >= self.threshold,
            "confidence": round(confidence, 4),
            "took_ms": round((time.perf_counter() - began) * 1000, 2),
            "results": results,
            "index": {"built_at": self.index.manifest["built_at"], "model": self.index.manifest["model"]["id"],
                      "chunks": self.index.manifest["chunks"]},
        }


def section_centroids(index: Index) -> tuple[np.ndarray, np.ndarray]:
    """Each chunk's section number, and one unit vector per section: the normalised mean of its passages."""
    keys: dict[tuple[str, int], int] = {}
    section_of = np.array([keys.setdefault((c.document, c.section_index), len(keys)) for c in index.chunks],
                          dtype=np.int64)
    sums = np.zeros((len(keys), index.vectors.shape[1]), dtype=np.float32)
    np.add.at(sums, section_of, index.vectors)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return section_of, sums / np.where(norms > 0, norms, 1)
