"""Retrieval quality with the real model: answerability on clear cases, and dev-set floors that must not fall.

The floors sit a little under the measured figures (README, "Retrieval quality"), not at the targets.
"""

import json

import pytest
from click.testing import CliRunner

from qa.cli import main
from qa.engine import open_searcher
from qa.evaluation import load_jsonl, respond, run_evaluation, score
from qa.onnx_embedding import OnnxEmbedder

from conftest import DEV_QUESTIONS

pytestmark = pytest.mark.model

FLOORS = {"hit@1": 0.70, "hit@5": 0.89, "mrr@10": 0.79, "section@1": 0.80, "highlight@1": 0.63,
          "answerable_recall": 0.93, "unanswerable_rejected": 0.41}


@pytest.mark.parametrize("question", ["When did Russia deliver the S-300 to Iran?",
                                      "Which group controls Idlib province?"])
def test_clear_questions_are_answerable(real_searcher, question):
    assert real_searcher.search(question)["answerable"] is True


@pytest.mark.parametrize("question", ["who won the 2022 world cup", "best recipe for chocolate cake"])
def test_clearly_foreign_questions_are_not(real_searcher, question):
    response = real_searcher.search(question)
    assert response["answerable"] is False and len(response["results"]) == 5  # closest passages still returned


def test_threshold_setting_overrides_the_default(real_searcher):
    from qa.search import Searcher

    permissive = Searcher(real_searcher.index, real_searcher.embedder, answerable_threshold=-1.0)
    assert permissive.search("who won the 2022 world cup")["answerable"] is True


def test_dev_figures_do_not_fall_below_their_floors(real_paths):
    corpus, index = real_paths
    figures, misses = run_evaluation(DEV_QUESTIONS, corpus, index)
    for key, floor in FLOORS.items():
        assert figures[key] >= floor, (key, figures[key])
    assert figures["median_passage_words"] <= 120
    assert figures["hit@5_by_type"]["typo"] == 1.0  # every misspelt question finds its passage in the top 5
    assert len(misses) == round((1 - figures["hit@1"]) * figures["answerable_items"])


def test_the_int8_query_encoder_keeps_the_dev_figures_above_their_floors(real_paths):
    """The opt-in `int8` encoder (the `query_encoder` setting) is close to the exact one and ranks as well."""
    corpus, index = real_paths
    searcher = open_searcher(index, corpus, encoder="int8")
    assert searcher.embedder.encoder == "int8"
    questions = [json.loads(line)["question"] for line in DEV_QUESTIONS.read_text(encoding="utf-8").splitlines()]
    exact = OnnxEmbedder(searcher.index.path, encoder="exact").encode(questions)
    assert 0.98 <= (searcher.embedder.encode(questions) * exact).sum(axis=1).min() < 0.9999  # close, not the same
    items = load_jsonl(DEV_QUESTIONS)
    (text,) = [d.text for d in searcher.index.documents.values()]
    figures, _ = score(text, items, respond(searcher, items))
    for key, floor in FLOORS.items():
        assert figures[key] >= floor, (key, figures[key])


def test_qa_eval_json_agrees_with_the_library(real_paths):
    corpus, index = real_paths
    result = CliRunner().invoke(main, ["eval", str(DEV_QUESTIONS), "--json", "--corpus", str(corpus),
                                       "--index", str(index)])
    printed = json.loads(result.stdout)
    figures, misses = run_evaluation(DEV_QUESTIONS, corpus, index)
    assert {k: v for k, v in printed.items() if k != "misses"} == figures
    assert printed["misses"] == [list(m) for m in misses]
