"""What a build precomputes for every worker and maps (BM25 postings, speller vocabulary, passages): the same
answers as the structures each worker used to build for itself, and damage reported clearly."""

import json
from pathlib import Path

import bm25s
import numpy as np
import pytest

from qa.chunking import chunk_document
from qa.documents import read_corpus
from qa.index import IndexUnavailable, build, embedded_text, live_build, load
from qa.lexical import STOPWORDS, Postings, _stemmer, normalize, tokenize
from qa.spelling import CountedVocabulary, MappedVocabulary, Speller, deletions
from qa.tables import StringTable

from conftest import CORPUS, DEV_QUESTIONS, FakeEmbedder

QASPER = Path(__file__).resolve().parents[1] / "eval" / "qasper"


def bm25s_scores(texts: list[str], terms: list[str]) -> np.ndarray:
    """The reference: BM25 as bm25s computes it over `texts` alone (what each worker used to build)."""
    tokenized = bm25s.tokenize([normalize(t) for t in texts], stopwords="en", stemmer=_stemmer(), show_progress=False)
    index = bm25s.BM25()
    index.index(tokenized, show_progress=False)
    known = [t for t in terms if t in set(tokenized.vocab) - {""}]
    return np.asarray(index.get_scores(known), dtype=np.float32) if known else np.zeros(len(texts), np.float32)


@pytest.fixture(scope="module")
def papers() -> tuple[list[str], dict[str, tuple[int, int]], list[str]]:
    """Passages of the QASPER dev papers and of the bundled paper in chunk id order, each document's range, and
    questions to score them with."""
    texts: list[str] = []
    ranges = {}
    for doc in read_corpus(QASPER / "papers") + read_corpus(CORPUS):
        first = len(texts)
        texts += [embedded_text(c) for c in chunk_document(doc)]
        ranges[doc.id] = (first, len(texts))
    questions = [json.loads(line)["question"] for path in (QASPER / "questions.jsonl", DEV_QUESTIONS)
                 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts, ranges, questions + ["model model model", "zzzz unknown", "", "S-300 s300"]


def test_postings_score_as_bm25s_over_the_corpus_and_within_each_document(papers, tmp_path):
    """To the bit: within one document the statistics are the document's alone, as if it were the only one."""
    texts, ranges, questions = papers
    Postings.write(tmp_path, texts)
    postings = Postings(tmp_path)
    queries = [tokenize([q])[0] for q in questions[::3]]
    for terms in queries:
        assert np.array_equal(postings.scores(terms, 0, len(texts)), bm25s_scores(texts, terms))
    for first, last in ranges.values():
        for terms in queries[:12]:
            assert np.array_equal(postings.scores(terms, first, last), bm25s_scores(texts[first:last], terms))
    assert postings.scores(["nosuchterm"], 0, len(texts)).shape == (len(texts),)


def test_the_mapped_vocabulary_corrects_as_the_counted_one(papers, tmp_path):
    texts, _, _ = papers
    MappedVocabulary.write(tmp_path, texts, STOPWORDS)
    mapped = MappedVocabulary(tmp_path)
    counted = CountedVocabulary(texts, STOPWORDS)
    words = sorted(counted.frequency)[::7]
    typos = [sorted(deletions(w))[-1] for w in words if len(w) > 4] + [w[:2] + "x" + w[2:] for w in words]
    assert all(mapped.count(w) == counted.count(w) for w in words + typos)
    for variants in ([w] for w in typos):
        assert mapped.indexed_under(variants) == counted.indexed_under(variants)
    a, b = Speller(mapped, STOPWORDS, mapped.english), Speller(counted, STOPWORDS)
    assert [a.suggest(t) for t in typos] == [b.suggest(t) for t in typos]
    assert any(a.suggest(t) for t in typos)


def test_a_string_table_finds_each_string_and_nothing_else(tmp_path):
    strings = ["", "a", "naïve", "x" * 300, "ab", "ba"]
    position = StringTable.write(tmp_path, "t", strings)
    table = StringTable(tmp_path, "t")
    assert [table[position[s]] for s in strings] == strings
    assert table.positions(strings).tolist() == [position[s] for s in strings]
    assert table.positions(["abc", "A"]).tolist() == [-1, -1] and "abc" not in table and "naïve" in table


def test_the_passages_read_on_demand_are_those_built(tiny_corpus, tiny_index):
    index = load(tiny_index)
    chunks = [c for doc in read_corpus(tiny_corpus) for c in chunk_document(doc)]
    assert list(index.chunks) == chunks and index.chunks == chunks and index.chunks[1:3] == chunks[1:3]
    assert index.chunks[-1] == chunks[-1] and len(index.chunks) == len(chunks)
    with pytest.raises(IndexError):
        index.chunks[len(chunks)]
    assert dict(index.documents) == {d.id: d for d in read_corpus(tiny_corpus)}


def test_an_incremental_build_writes_the_files_of_a_fresh_one(tiny_corpus, tiny_index, tmp_path):
    (tiny_corpus / "rivers.txt").write_text("Rivers\n\nOne sentence here. Another one.\n", encoding="utf-8")
    (tiny_corpus / "lakes.md").write_text("# Lakes\n\n## Big\n\nLakes are large. Lakes are deep.\n", encoding="utf-8")
    assert build(tiny_corpus, tiny_index, FakeEmbedder()).unchanged == ["mountains"]
    build(tiny_corpus, tmp_path / "fresh", FakeEmbedder())
    incremental, fresh = live_build(tiny_index), live_build(tmp_path / "fresh")
    names = sorted(p.name for p in fresh.iterdir() if p.name != "manifest.json")
    assert names == sorted(p.name for p in incremental.iterdir() if p.name != "manifest.json")
    for name in names:
        assert (incremental / name).read_bytes() == (fresh / name).read_bytes(), name


@pytest.mark.parametrize("name, damage, message", [
    ("postings.counts.npy", "remove", "No such file or directory: postings.counts.npy"),
    ("chunks.bin", "truncate", "chunks.bin does not match chunks.offsets.npy"),
    ("words.hashes.npy", "truncate", "damaged"),
    ("documents.ids.json", "truncate", "damaged"),
    ("documents.summary.json", "remove", "documents.summary.json is missing"),
    ("documents.pages.offsets.npy", "truncate", "damaged"),
    ("sections.npy", "swap", "inconsistent"),
])
def test_a_damaged_or_missing_file_is_reported_clearly(tiny_index, name, damage, message):
    path = live_build(tiny_index) / name
    if damage == "remove":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # a well-formed file of the wrong size
        np.save(path, np.zeros(3, dtype=np.int64))
    with pytest.raises(IndexUnavailable, match="run `qa build`") as caught:
        load(tiny_index)
    assert message in str(caught.value)


def test_the_build_is_mapped_not_read(tiny_index):
    """The tables are memory maps of the build's files: every worker shares their pages."""
    index = load(tiny_index)
    assert index.postings is not None and index.vocabulary is not None and index.sections is not None
    for array in (index.postings.passages, index.postings.terms.hashes, index.vocabulary.variants, index.sections[1],
                  index.sentence_offsets):
        assert isinstance(array.base, np.memmap) and not array.flags.writeable
    assert isinstance(index.chunks.records.data, np.memmap)


def test_listings_read_summaries_that_match_the_documents(tiny_index):
    """Listing the documents (the documents page, the search form, /api/documents) reads no document's text."""
    index = load(tiny_index)
    summaries = index.document_summaries
    assert [s.id for s in summaries] == list(index.documents)
    for summary in summaries:
        doc = index.documents[summary.id]
        assert (summary.title, summary.byline, summary.sections) == (doc.title, doc.byline, doc.sections)
        assert summary.paragraph_count == len(doc.paragraphs) > 0
        assert index.page_starts(summary.id) == doc.pages


def test_a_summary_file_out_of_step_with_the_documents_is_damage(tiny_index):
    path = live_build(tiny_index) / "documents.summary.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(records[::-1]), encoding="utf-8")
    with pytest.raises(IndexUnavailable, match="does not match.*run `qa build`"):
        _ = load(tiny_index).document_summaries


def test_a_damaged_summary_file_is_a_503_not_a_500(app, client, tiny_index):
    (live_build(tiny_index) / "documents.summary.json").write_text("{not json", encoding="utf-8")
    for url in ("/api/documents", "/documents", "/"):
        response = client.get(url)
        assert response.status_code == 503, url
    assert "run `qa build`" in client.get("/api/documents").get_json()["error"]["message"]


def test_the_stop_words_are_those_of_bm25s():
    from bm25s.stopwords import STOPWORDS_EN

    assert STOPWORDS == frozenset(STOPWORDS_EN)
