"""`qa eval`'s scoring agrees with the reference scorer (`fixtures/score.py`) on a fixed response file."""

import importlib.util
import json

import pytest

from qa.evaluation import item_documents, load_jsonl, score

from conftest import CORPUS, DEV_QUESTIONS, FIXTURES

DOCUMENT = (CORPUS / "russian-iranian-relations.txt").read_text(encoding="utf-8")


def reference_scorer():
    spec = importlib.util.spec_from_file_location("reference_score", FIXTURES / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("shorter", [False, True])
def test_scores_match_reference_scorer(shorter):
    items = load_jsonl(DEV_QUESTIONS)
    responses = load_jsonl(FIXTURES / "dev-responses.jsonl")
    expected, expected_misses = reference_scorer().score(DOCUMENT, items, responses, shorter=shorter)
    figures, misses = score(DOCUMENT, items, responses, shorter=shorter)
    assert json.dumps(figures) == json.dumps(expected)  # same keys, order and values
    assert misses == expected_misses


def test_scores_match_reference_for_multi_document_items():
    texts = {"a": "Alpha beta gamma. Delta epsilon.", "b": "Zeta eta theta. Iota kappa."}
    items = [
        {"id": "1", "document": "a", "question": "?", "evidence": ["Delta epsilon."], "section": "S", "type": "t"},
        {"id": "2", "document": "b", "question": "?", "evidence": ["Zeta eta theta."], "section": "S", "type": "t"},
        {"id": "3", "document": "b", "question": "?", "evidence": [], "section": None, "type": "unanswerable"},
    ]
    wrong_doc = {"document": "a", "start": 0, "end": 17, "section": "S", "text": "Alpha beta gamma.",
                 "highlights": [{"start": 0, "end": 17}]}
    responses = [
        {"answerable": True, "results": [{"document": "a", "start": 18, "end": 32, "section": "S",
                                          "text": "Delta epsilon.", "highlights": [{"start": 18, "end": 32}]}]},
        {"answerable": True, "results": [wrong_doc]},
        {"answerable": False, "results": [wrong_doc]},
    ]
    expected, _ = reference_scorer().score(texts, items, responses, shorter=True)
    figures, _ = score(texts, items, responses, shorter=True)
    assert figures == expected
    assert figures["hit@1"] == 0.5 and figures["unanswerable_rejected"] == 1.0


def test_mismatched_response_count_is_an_error():
    with pytest.raises(ValueError, match="one response per question"):
        score(DOCUMENT, load_jsonl(DEV_QUESTIONS), [])


def test_per_document_items_are_grouped_by_their_file_and_bad_ones_refused_before_any_build(tmp_path):
    for name in ("a.md", "b.md"):
        (tmp_path / name).write_text("# Title\n\nText.\n", encoding="utf-8")
    items = [{"id": "1", "document": "b"}, {"id": "2", "document": "a"}, {"id": "3", "document": "b"}]
    assert item_documents(items, tmp_path) == {"b": (tmp_path / "b.md", [0, 2]), "a": (tmp_path / "a.md", [1])}
    with pytest.raises(ValueError, match="2: per-document mode needs items that name their `document`"):
        item_documents([items[0], {"id": "2"}], tmp_path)
    with pytest.raises(ValueError, match="document 'c' is not in"):
        item_documents([*items, {"id": "4", "document": "c"}], tmp_path)
