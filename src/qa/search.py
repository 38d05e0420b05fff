"""Searching: hybrid (dense + BM25) ranking of passages, the answering sentence marked, and answerability.

Knows nothing of Flask or click: `Searcher.search` takes a question and returns the JSON-ready response that the
API, the web page, the CLI and the evaluation all share. What it asks of the stored passages goes through a
`store.PassageStore`; how it orders the candidates is a `rankers.Ranker`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .chunking import Chunk
from .confidence import Calibration
from .embedding import Embedder
from .faiss_store import FaissBm25Store
from .formats.reader import page_span
from .index import Index
from .lexical import STOPWORDS
from .rankers import Features, Weights, make_ranker
from .spelling import Correction, Speller
from .store import PassageStore

MAX_QUERY_CHARS = 1000
MAX_K = 50
DEFAULT_K = 5
CANDIDATES = 100  # passages taken from each signal (dense via the store, BM25) before ranking (`rankers`)
# Highlight: the best sentence, joined by an adjacent one scoring at least this share of it.
PAIR_RATIO = 0.9
# Answerability: `confidence.Calibration` turns the top result's signals into the probability that the documents
# answer; a response is answerable when it reaches the calibration's threshold (QA_ANSWERABLE_THRESHOLD overrides).


class QueryError(ValueError):
    """A question or parameter the service cannot accept; `code` is the API's stable error code."""

    def __init__(self, message: str, code: str = "invalid_parameter") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def validate(
    query: object, k: object = DEFAULT_K, document: object = None, documents: Mapping | None = None
) -> tuple[str, int, str | None]:
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
    passage: np.ndarray  # passage cosine of each, same order


class Searcher:
    """Answers questions over one loaded index; everything a query needs is precomputed here, once.

    `store` defaults to the build's own FAISS and BM25 (`faiss_store.FaissBm25Store`); `weights.fusion` names the
    ranker (`rankers.RANKERS`).
    """

    def __init__(
        self,
        index: Index,
        embedder: Embedder,
        answerable_threshold: float | None = None,
        weights: Weights = Weights(),  # noqa: B008 - frozen: one shared default is safe
        store: PassageStore | None = None,
        calibration: Calibration = Calibration(),  # noqa: B008 - frozen too
    ) -> None:
        self.index = index
        self.weights = weights
        self.ranker = make_ranker(weights)
        self.embedder = embedder
        self.store: PassageStore = store or FaissBm25Store(index)
        self.speller = Speller(index.vocabulary, STOPWORDS, index.vocabulary.english)  # the build's, not counted here
        self.calibration = calibration
        self.threshold = calibration.threshold if answerable_threshold is None else answerable_threshold

    def features(self, query: str, query_vector: np.ndarray, document: str | None = None) -> Features:
        """The candidates (the best by each signal within the scope, joined) and their signals."""
        store = self.store
        dense = store.dense_candidates(query_vector, store.scope(document), CANDIDATES)
        candidates, lexical = store.lexical_candidates(query, document, CANDIDATES, dense)
        return Features(
            query,
            candidates,
            store.passage_similarities(candidates, query_vector),
            store.best_sentence_similarities(candidates, query_vector),
            store.section_similarities(candidates, query_vector),
            lexical,
        )

    def rank(self, query: str, query_vector: np.ndarray, document: str | None = None) -> Ranking:
        """The candidates in the ranker's order, best first."""
        features = self.features(query, query_vector, document)
        fused = self.ranker.score(features)
        order = np.argsort(-fused, kind="stable")
        return Ranking(features.chunks[order], fused[order], features.sentence[order], features.passage[order])

    def highlights(
        self, chunk_ids: Sequence[int], query_vector: np.ndarray, passages: Sequence[Chunk] | None = None
    ) -> list[list[dict]]:
        """For each passage, its sentence closest to the question (or two adjacent ones that answer together); the
        store is asked once for all of them. `passages` are their records when the caller has read them."""
        ids = [int(i) for i in chunk_ids]
        records = self.index.passages(ids) if passages is None else passages
        found = []
        for c, similarities in zip(records, self.store.highlight_similarities(np.array(ids), query_vector)):
            a, b = best_sentences(similarities)
            found.append([{"start": c.sentences[a][0], "end": c.sentences[b][1]}])
        return found

    def highlight(self, chunk_id: int, query_vector: np.ndarray) -> list[dict]:
        """`highlights` of one passage."""
        return self.highlights([chunk_id], query_vector)[0]

    def confidence_signals(self, ranking: Ranking) -> dict[str, float]:
        """What `Calibration` reads: the top passage's best sentence cosine and its own cosine (-1 without one)."""
        if not len(ranking.chunks):
            return {"top_sentence": -1.0, "top_passage": -1.0}
        return {"top_sentence": float(ranking.best_sentence[0]), "top_passage": float(ranking.passage[0])}

    def prepare(
        self, query: str, document: str | None = None
    ) -> tuple[Correction, np.ndarray, Ranking, dict[str, float]]:
        """A validated question's spelling correction, vector, ranking and confidence signals."""
        correction = self.speller.correct(query)  # words the corpus does not know, spelt as it does
        query_vector = self.embedder.encode([correction.corrected])[0]
        ranking = self.rank(correction.corrected, query_vector, document)
        return correction, query_vector, ranking, self.confidence_signals(ranking)

    def search(self, query: str, k: int = DEFAULT_K, document: str | None = None) -> dict:
        began = time.perf_counter()
        query, k, document = validate(query, k, document, self.index.documents)
        correction, query_vector, ranking, signals = self.prepare(query, document)
        confidence = self.calibration.confidence(signals)
        results = []
        top = ranking.chunks[:k].tolist()
        passages = self.index.passages(top)
        highlights = self.highlights(top, query_vector, passages)
        for rank, (score, c, highlight) in enumerate(zip(ranking.scores[:k], passages, highlights), start=1):
            page, page_end = page_span(self.index.page_starts(c.document), c.start, c.end)
            results.append(
                {
                    "rank": rank,
                    "score": round(float(score), 4),
                    "document": c.document,
                    "document_title": c.document_title,
                    "section": c.section,
                    "chunk": c.chunk,
                    "paragraph": c.paragraph,
                    "page": page,
                    "page_end": page_end,
                    "start": c.start,
                    "end": c.end,
                    "text": c.text,
                    "highlights": highlight,
                }
            )
        return {
            "query": query,
            **({"corrected_query": correction.corrected} if correction.changed else {}),
            "answerable": bool(len(ranking.chunks)) and confidence >= self.threshold,
            "confidence": round(confidence, 4),
            "took_ms": round((time.perf_counter() - began) * 1000, 2),
            "results": results,
            "index": {
                "built_at": self.index.manifest["built_at"],
                "model": self.index.manifest["model"]["id"],
                "chunks": self.index.manifest["chunks"],
            },
        }
