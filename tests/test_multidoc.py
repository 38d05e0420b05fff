"""Many documents in one index (real model): the right document answers, filters hold, `qa eval` modes agree."""

import json
import shutil

import pytest
from click.testing import CliRunner

from qa.cli import main
from qa.engine import open_searcher
from qa.index import build

from conftest import CORPUS, FIXTURES, ROOT, S300

pytestmark = pytest.mark.model

PAPERS = ROOT / "eval" / "qasper" / "papers"
MINI = FIXTURES / "qasper-mini.jsonl"


@pytest.fixture(scope="module")
def library(tmp_path_factory, real_embedder):
    """The bundled paper plus two research papers under `papers/`, in one index."""
    base = tmp_path_factory.mktemp("library")
    corpus = base / "corpus"
    shutil.copytree(CORPUS, corpus)
    (corpus / "papers").mkdir()
    for name in ("1605.03481.md", "1909.01362.md"):
        shutil.copyfile(PAPERS / name, corpus / "papers" / name)
    build(corpus, base / "index", real_embedder)
    return corpus, base / "index", open_searcher(base / "index", corpus, embedder=real_embedder)


@pytest.mark.parametrize("question,document", [
    (S300, "russian-iranian-relations"),
    ("How are character-level representations of tweets learned?", "papers/1605.03481"),
    ("forecasting whether an online conversation will derail into antisocial behaviour",
     "papers/1909.01362"),
])
def test_each_question_is_answered_from_the_right_document(library, question, document):
    _, _, searcher = library
    top = searcher.search(question)["results"][0]
    assert top["document"] == document
    assert top["document_title"] == searcher.index.documents[document].title


def test_markdown_titles_and_section_paths(library):
    _, _, searcher = library
    paper = searcher.index.documents["papers/1605.03481"]
    assert paper.title == "Tweet2Vec: Character-Based Distributed Representations for Social Media"
    assert [s.title for s in paper.sections][:2] == ["Abstract", "Introduction"]
    assert all("Paper ID" not in paper.text[p.start:p.end] for p in paper.paragraphs)


def test_restricted_search_equals_a_one_document_index(library, tmp_path, real_embedder):
    corpus, _, searcher = library
    alone = tmp_path / "alone"
    (alone / "papers").mkdir(parents=True)
    shutil.copyfile(corpus / "papers" / "1605.03481.md", alone / "papers" / "1605.03481.md")
    build(alone, tmp_path / "index", real_embedder)
    single = open_searcher(tmp_path / "index", alone, embedder=real_embedder)
    question = "What is the word-level baseline?"
    restricted = searcher.search(question, 10, "papers/1605.03481")["results"]
    by_itself = single.search(question, 10)["results"]
    assert [(r["start"], r["end"]) for r in restricted] == [(r["start"], r["end"]) for r in by_itself]


@pytest.mark.parametrize("encoder", ["exact", "int8"])
def test_qa_eval_restricted_equals_per_document_on_a_qasper_style_fixture(tmp_path, encoder, monkeypatch):
    from qa.cli import run_build

    monkeypatch.setenv("QA_QUERY_ENCODER", encoder)
    papers = tmp_path / "papers"  # the reference scorer's layout: one file per document id
    papers.mkdir()
    for name in ("1605.03481.md", "1909.01362.md"):
        shutil.copyfile(PAPERS / name, papers / name)
    run_build(str(papers), str(tmp_path / "index"))
    figures = {}
    for mode in ("restricted", "per-document", "unrestricted"):
        result = CliRunner().invoke(main, ["eval", str(MINI), "--json", "--paragraph-evidence", "--mode", mode,
                                           "--query-encoder", encoder, "--corpus", str(papers),
                                           "--index", str(tmp_path / "index")])
        assert result.exit_code == 0, result.output
        figures[mode] = json.loads(result.stdout)
    # Equal in both modes with either encoder; the two encoders give different mrr@10 here (0.714, 0.707), so
    # per-document questions must go through the chosen one.
    assert figures["restricted"] == figures["per-document"]
    assert figures["restricted"]["answerable_items"] == 7
    assert 0 <= figures["unrestricted"]["hit@1"] <= figures["unrestricted"]["hit@5"] <= 1
