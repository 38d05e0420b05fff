"""Ranking, fusion, highlights and document filtering (fake embedder), checked against brute-force references."""

import json

import numpy as np
import pytest

from qa.engine import open_searcher
from qa.lexical import tokenize
from qa.rankers import RANKERS, Weights, make_ranker
from qa.rankers.base import DENSE_WEIGHT, PASSAGE_WEIGHT, SECTION_WEIGHT
from qa.rankers.rrf import RRF_K, reciprocal_rank_fusion
from qa.rankers.zscore import weighted_fusion, zscore
from qa.search import PAIR_RATIO, QueryError, Searcher, best_sentences, validate

from conftest import CORPUS, DEV_QUESTIONS


@pytest.fixture
def searcher(tiny_index, fake_embedder):
    return open_searcher(tiny_index, embedder=fake_embedder)


def test_fusion_constants_are_pinned():
    assert (DENSE_WEIGHT, PASSAGE_WEIGHT, SECTION_WEIGHT, PAIR_RATIO, RRF_K) == (0.6, 0.5, 0.2, 0.9, 60)


def test_weighted_fusion_on_a_hand_made_ranking():
    dense = np.array([0.9, 0.5, 0.1])
    lexical = np.array([0.0, 10.0, 5.0])
    fused = weighted_fusion(dense, lexical)
    expected = 0.6 * (dense - dense.mean()) / dense.std() + 0.4 * (lexical - lexical.mean()) / lexical.std()
    assert fused == pytest.approx(expected)
    assert list(np.argsort(-fused)) == [1, 0, 2]
    assert zscore(np.array([2.0, 2.0])) == pytest.approx([0.0, 0.0])


def test_reciprocal_rank_fusion_counts_ranks_from_one():
    a = np.array([3.0, 2.0, 1.0])
    b = np.array([1.0, 3.0, 2.0])
    assert reciprocal_rank_fusion(a, b) == pytest.approx([1 / 61 + 1 / 63, 1 / 62 + 1 / 61, 1 / 63 + 1 / 62])


def test_best_sentences_pairs_a_close_neighbour_only():
    assert best_sentences(np.array([0.1, 0.8, 0.3])) == (1, 1)
    assert best_sentences(np.array([0.1, 0.8, 0.75])) == (1, 2)
    assert best_sentences(np.array([0.5])) == (0, 0)


@pytest.mark.parametrize("weights", [Weights(), Weights(fusion="rrf"), Weights(dense=1.0, section=0.0)])
def test_ranking_matches_a_brute_force_reference(searcher, fake_embedder, weights):
    """With every passage a candidate, the fused order equals recomputing every score by hand."""
    searcher = Searcher(searcher.index, fake_embedder, weights=weights)
    index = searcher.index
    query = "Which river carries the most water into the sea?"
    qv = fake_embedder.encode([query])[0]
    ranking = searcher.rank(query, qv)
    assert sorted(ranking.chunks) == list(range(len(index.chunks)))
    passage = index.vectors @ qv
    sentence = np.array([max(index.sentence_vectors[index.sentence_offsets[i]:index.sentence_offsets[i + 1]] @ qv)
                         for i in range(len(index.chunks))])
    sections = {}
    for i, c in enumerate(index.chunks):
        sections.setdefault((c.document, c.section_index), []).append(i)
    section = np.zeros(len(index.chunks))
    for members in sections.values():
        centroid = index.vectors[members].sum(0)
        section[members] = (centroid / np.linalg.norm(centroid)) @ qv
    dense = weights.passage * passage + (1 - weights.passage) * sentence + weights.section * section
    lexical = searcher.store.lexical_scores(query, None)
    if weights.fusion == "rrf":
        dense_rank = np.argsort(np.argsort(-dense, kind="stable"), kind="stable") + 1
        lexical_rank = np.argsort(np.argsort(-lexical, kind="stable"), kind="stable") + 1
        expected = 1 / (60 + dense_rank) + 1 / (60 + lexical_rank)
    else:
        expected = weights.dense * zscore(dense) + (1 - weights.dense) * zscore(lexical)
    assert list(ranking.chunks) == list(np.argsort(-expected, kind="stable"))
    assert ranking.scores == pytest.approx(np.sort(expected)[::-1], rel=1e-5)


def test_results_slice_the_document_and_highlights_sit_inside(searcher):
    response = searcher.search("Nile flood farmers", k=10)
    assert [r["rank"] for r in response["results"]] == list(range(1, len(response["results"]) + 1))
    assert response["results"][0]["section"] == "The Nile"
    for r in response["results"]:
        text = searcher.index.documents[r["document"]].text
        assert text[r["start"]:r["end"]] == r["text"]
        for mark in r["highlights"]:
            assert r["start"] <= mark["start"] < mark["end"] <= r["end"]


def test_the_highlight_follows_the_in_context_sentence_vectors(searcher, fake_embedder):
    """Ranking reads each sentence alone; the mark reads it in its passage (`Index.highlight_vectors`)."""
    index = searcher.index
    chunk_id = next(i for i, c in enumerate(index.chunks) if len(c.sentences) >= 2)
    first = index.sentence_offsets[chunk_id]
    query_vector = fake_embedder.encode(["Nile flood"])[0]
    index.highlight_vectors = index.highlight_vectors.copy()
    index.highlight_vectors[first:first + 2] = [-query_vector, query_vector]  # the second sentence, by far
    sentences = index.chunks[chunk_id].sentences
    assert searcher.highlight(chunk_id, query_vector) == [{"start": sentences[1][0], "end": sentences[1][1]}]


def test_document_filter_restricts_results(searcher):
    everywhere = searcher.search("rivers and mountains", k=10)
    assert {r["document"] for r in everywhere["results"]} == {"rivers", "mountains"}
    only = searcher.search("rivers and mountains", k=10, document="mountains")
    assert {r["document"] for r in only["results"]} == {"mountains"}
    with pytest.raises(QueryError, match="unknown document"):
        searcher.search("rivers", document="nope")


@pytest.mark.parametrize("query,k", [("", 5), ("   ", 5), ("x" * 1001, 5), ("q", 0), ("q", 51), ("q", True),
                                     ("q", 5.5), ("q", "5"), (None, 5), (3, 5)])
def test_validation_rejects_bad_parameters(query, k):
    with pytest.raises(QueryError):
        validate(query, k)


def test_validation_accepts_and_trims():
    assert validate("  a question ", 50, None) == ("a question", 50, None)


def test_query_terms_are_those_of_bm25s_tokenize():
    """`lexical.tokenize` is a faster route to the terms the BM25 index was built with: they must be identical."""
    import bm25s

    from qa.lexical import _stemmer, normalize

    texts = [line for path in CORPUS.iterdir() for line in path.read_text(encoding="utf-8").splitlines()]
    texts += [json.loads(line)["question"] for line in DEV_QUESTIONS.read_text(encoding="utf-8").splitlines()]
    texts += ["", "!!", "a", "Iran's S-300s", "naïve café ÉTÉ 2016", "the and of", "x_y 3.5 über-Strauß"]
    reference = bm25s.tokenize([normalize(t) for t in texts], stopwords="en", stemmer=_stemmer(), return_ids=False,
                               show_progress=False)
    assert tokenize(texts) == reference


def test_a_ranker_plugs_in_with_one_registration(searcher, fake_embedder, monkeypatch):
    """A new ranker is a class with `score(features)` and one line in RANKERS; `Weights(fusion=...)` selects it."""

    class LexicalOnly:
        def __init__(self, weights):
            self.weights = weights

        def score(self, features):
            return features.lexical

    monkeypatch.setitem(RANKERS, "lexical-only", LexicalOnly)
    plugged = Searcher(searcher.index, fake_embedder, weights=Weights(fusion="lexical-only"))
    query = "Which river carries the most water into the sea?"
    ranking = plugged.rank(query, fake_embedder.encode([query])[0])
    lexical = searcher.store.lexical_scores(query, None)
    assert list(ranking.scores) == sorted(lexical[ranking.chunks], reverse=True)
    assert list(ranking.chunks) == list(np.argsort(-lexical, kind="stable"))[:len(ranking.chunks)]
    with pytest.raises(ValueError, match="unknown ranker 'learned'"):
        make_ranker(Weights(fusion="learned"))
