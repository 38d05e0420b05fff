"""The on-disk index: built atomically into `index/builds/<id>/`, made live by renaming the `CURRENT` pointer.

A build is complete before it becomes live, so a crash or Ctrl-C mid-build leaves the previous index live and intact.
A rebuild re-embeds only the documents whose bytes changed since the live build (same model and chunking).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from datetime import UTC, datetime
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import faiss
import numpy as np
from filelock import FileLock, Timeout

from .chunking import MAX_WORDS, Chunk, chunk_document
from .documents import CorpusError, Document, SkippedFile, corpus_files, fingerprint, scan_corpus
from .embedding import Embedder, SpanEmbedder
from .lexical import STOPWORDS, Postings
from .passages import (
    ChunkSequence,
    DocumentMapping,
    Documents,
    DocumentSummary,
    Passages,
    ranges_from_counts,
    write_passages,
)
from .spelling import BuildVocabulary, MappedVocabulary
from .tables import DamagedTable, mapped

FORMAT_VERSION = 4  # 2: highlights.npy; 3: sentences.npy in half precision; 4: passages, BM25, speller mapped
VECTOR_FILES = ("vectors.npy", "sentences.npy", "highlights.npy")  # passages, sentences alone, sentences in context
# Sentence vectors, the most rows, feed one ranking signal: half precision halves their file and pages with the same
# evaluation figures (docs/benchmark.md). Passage vectors (FAISS, every signal) and highlights stay single.
STORED_DTYPES = (np.float32, np.float16, np.float32)
POINTER = "CURRENT"
BUILDS = "builds"
LOCK_FILE = ".build.lock"
KEEP_BUILDS = 2  # the live build and the one before it, which a server may still be loading
# Chunks; above this the FAISS index is HNSW instead of exact flat search. Measured (bench/run.py, 2 cores): one
# flat query costs ~0.03 ms per 1,000 vectors single-threaded, but from ~10,000 vectors FAISS splits a single query
# over OpenMP threads, which on a busy machine costs tens of milliseconds; HNSW stays well under a millisecond.
APPROXIMATE_ABOVE = 8_000

# Padded tokens per encoder call in a build. Measured on the passages and sentences of 5 QASPER papers (2 cores):
# 512-2,048 tokens a call took 10-20% less CPU than 32 texts a call (up to 8,192 tokens) and than 8,192-16,384.
BATCH_TOKENS = 1024

MANIFEST_KEYS = frozenset({"model", "dimension", "chunking", "files", "documents", "chunks", "built_at"})

Progress = Callable[[Iterable, int, str], Iterable]


class IndexUnavailable(Exception):
    """No usable index: missing, stale, corrupt or built with another model. The message says what to do."""


@dataclass
class BuildReport:
    build_id: str = ""
    chunks: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Index:
    """A loaded build: everything a search needs (the vectors and FAISS's copy of them mapped from their files)."""

    path: Path
    manifest: dict
    documents: Documents  # a file build's: `passages.DocumentMapping`, parsed as asked for
    chunks: Passages  # a file build's: `passages.ChunkSequence`
    vectors: np.ndarray  # (chunks, dim), unit length
    sentence_vectors: np.ndarray  # (sentences, dim) float16, rows in chunk order; each sentence embedded alone
    highlight_vectors: np.ndarray  # like sentence_vectors, but each sentence read in its passage (see `build`)
    sentence_offsets: np.ndarray  # chunk i's sentences are rows sentence_offsets[i]:sentence_offsets[i+1]
    faiss_index: faiss.Index
    document_ranges: dict[str, tuple[int, int]]  # chunk id range of each document (chunks are grouped)
    # The speller's vocabulary and dictionary: a file build's mapped from its files, a published build's read by
    # query (`postgres_store.DatabaseVocabulary`); neither is counted in a worker.
    vocabulary: BuildVocabulary
    # What a file build precomputed for every worker, mapped from its files (None where the passages are elsewhere:
    # `postgres_store`): the BM25 postings, each chunk's section and the section centroids.
    postings: Postings | None = None
    sections: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def build_id(self) -> str:
        return self.path.name

    def page_starts(self, doc_id: str) -> tuple[int, ...]:
        """Where each page of a document starts in its text (empty for unpaged formats), without reading the text."""
        return self.documents.page_starts(doc_id)

    def passages(self, ids: Sequence[int]) -> list[Chunk]:
        """The chunks `ids`, in order, read together (one query for a published build)."""
        return self.chunks.take(ids)

    @cached_property
    def document_summaries(self) -> list[DocumentSummary]:
        """Every document without its text, in order: what listings show, read once per process (a damaged file is
        IndexUnavailable, which the pages and the API answer with 503)."""
        try:
            return self.documents.summaries
        except (OSError, ValueError, KeyError, TypeError) as exc:  # DamagedTable and JSONDecodeError are ValueErrors
            raise IndexUnavailable(f"index at {self.path} is damaged ({exc}); run `qa build`") from exc

    def summary(self) -> dict:
        m = self.manifest
        return {
            "build": self.build_id,
            "built_at": m["built_at"],
            "model": m["model"]["id"],
            "chunks": m["chunks"],
            "documents": len(self.documents),
        }


def chunking_params(max_words: int = MAX_WORDS) -> dict:
    return {"unit": "paragraph, split on sentences", "max_words": max_words, "embedded_text": "section. passage"}


def embedded_text(chunk: Chunk) -> str:
    """The text the passage vector is made from: the section title gives a passage its topic."""
    return f"{chunk.section}. {chunk.text}"


def embedded_sentence_spans(chunk: Chunk) -> list[tuple[int, int]]:
    """Where the chunk's sentences lie in `embedded_text(chunk)`."""
    shift = len(chunk.section) + 2 - chunk.start
    return [(start + shift, end + shift) for start, end in chunk.sentences]


# ---------------------------------------------------------------- locating the live build


def live_build(index_dir: Path) -> Path | None:
    pointer = index_dir / POINTER
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    path = index_dir / BUILDS / name
    return path if name and path.is_dir() else None


def pointer_stamp(index_dir: Path) -> tuple[int, int] | None:
    """A cheap fingerprint of the pointer file, to notice a new build without reading it."""
    try:
        st = (index_dir / POINTER).stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_ino


def read_manifest(build: Path) -> dict:
    try:
        manifest = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexUnavailable(f"index at {build} is unreadable ({exc}); run `qa build`") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise IndexUnavailable(f"index at {build} has another format; run `qa build`")
    if not MANIFEST_KEYS <= manifest.keys() or not isinstance(manifest["model"], dict):
        raise IndexUnavailable(f"index at {build} has an incomplete manifest; run `qa build`")
    return manifest


def stale_reasons(
    manifest: dict, corpus: Path, embedder_id: str, embedder_version: str, params: dict | None = None
) -> list[str]:
    """Why the index no longer matches the corpus, the model or the chunking; empty when it is fresh."""
    reasons = []
    if manifest["model"] != {"id": embedder_id, "version": embedder_version}:
        reasons.append(f"built with {manifest['model']['id']} ({manifest['model']['version']})")
    if manifest["chunking"] != (params or chunking_params()):
        reasons.append("chunking parameters changed")
    try:
        files = {path.relative_to(corpus).as_posix(): fingerprint(path) for path in corpus_files(corpus).values()}
    except CorpusError as exc:
        return reasons + [str(exc)]
    indexed = {**manifest["files"], **{name: s["sha256"] for name, s in skipped_files(manifest).items()}}
    for name in sorted(files.keys() - indexed.keys()):
        reasons.append(f"new file {name}")
    for name in sorted(indexed.keys() - files.keys()):
        reasons.append(f"file removed: {name}")
    for name in sorted(files.keys() & indexed.keys()):
        if files[name] != indexed[name]:
            reasons.append(f"file changed: {name}")
    return reasons


def skipped_files(manifest: dict) -> dict[str, dict]:
    """The files the build skipped, path -> {"sha256", "reason"}: unchanged, they keep the index fresh."""
    skipped = manifest.get("skipped")
    return skipped if isinstance(skipped, dict) else {}


# ---------------------------------------------------------------- loading


def load(index_dir: Path) -> Index:
    """Load the live build; IndexUnavailable with a one-line reason if there is none or it is damaged.

    Nothing is parsed or rebuilt here: every file is mapped (see `tables`), so a second worker opening the same
    build shares its pages, and opening takes the same time whatever the corpus's size.
    """
    build = live_build(index_dir)
    if build is None:
        raise IndexUnavailable(f"no index yet in {index_dir}/; run `qa build`")
    manifest = read_manifest(build)
    try:
        chunks = ChunkSequence(build)
        documents = DocumentMapping(build)
        chunk_counts = mapped(build / "documents.chunks.npy")
        offsets = mapped(build / "sentences.offsets.npy")
        vectors, sentence_vectors, highlight_vectors = (mapped(build / name) for name in VECTOR_FILES)
        faiss_index = faiss.read_index(str(build / "faiss.index"), faiss.IO_FLAG_MMAP_IFC)
        postings = Postings(build)
        vocabulary = MappedVocabulary(build)
        sections = mapped(build / "sections.npy"), mapped(build / "centroids.npy")
    except OSError as exc:
        name = Path(exc.filename).name if exc.filename else type(exc).__name__
        raise IndexUnavailable(f"index at {build} is damaged ({exc.strerror or exc}: {name}); run `qa build`") from exc
    except DamagedTable as exc:
        raise IndexUnavailable(f"index at {build} is damaged ({exc}); run `qa build`") from exc
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise IndexUnavailable(f"index at {build} is damaged ({type(exc).__name__}); run `qa build`") from exc
    n = len(chunks)
    if not (
        n == manifest["chunks"] == vectors.shape[0] == faiss_index.ntotal == len(postings.lengths)
        and len(documents) == manifest["documents"] == len(chunk_counts)
        and int(chunk_counts.sum()) == n
        and offsets.shape == (n + 1,)
        and sentence_vectors.shape == highlight_vectors.shape
        and sentence_vectors.shape[0] == offsets[-1]
        and vectors.shape[1:] == sentence_vectors.shape[1:] == (manifest["dimension"],)
        and sections[0].shape == (n,)
        and sections[1].shape[1:] == vectors.shape[1:]
    ):
        raise IndexUnavailable(f"index at {build} is inconsistent; run `qa build`")
    return Index(
        build,
        manifest,
        documents,
        chunks,
        vectors,
        sentence_vectors,
        highlight_vectors,
        offsets,
        faiss_index,
        ranges_from_counts(list(documents), chunk_counts),
        vocabulary,
        postings,
        sections,
    )


def document_ranges(chunks: Sequence[Chunk]) -> dict[str, tuple[int, int]]:
    ranges: dict[str, tuple[int, int]] = {}
    for i, chunk in enumerate(chunks):
        first, _ = ranges.get(chunk.document, (i, i))
        ranges[chunk.document] = (first, i + 1)
    return ranges


# ---------------------------------------------------------------- building


def section_centroids(chunks: Sequence[Chunk], vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each chunk's section number, and one unit vector per section: the normalised mean of its passages."""
    keys: dict[tuple[str, int], int] = {}
    section_of = np.array([keys.setdefault((c.document, c.section_index), len(keys)) for c in chunks], dtype=np.int64)
    sums = np.zeros((len(keys), vectors.shape[1]), dtype=np.float32)
    np.add.at(sums, section_of, vectors)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return section_of, sums / np.where(norms > 0, norms, 1)


def make_faiss_index(vectors: np.ndarray) -> faiss.Index:
    """Exact inner-product search; HNSW (approximate) once the corpus is large enough for it to matter."""
    dim = vectors.shape[1]
    index: faiss.Index
    if len(vectors) > APPROXIMATE_ABOVE:
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    return index


def _reusable(index_dir: Path, embedder: Embedder, params: dict) -> Index | None:
    """The live build, if its vectors can be reused (same model and chunking)."""
    try:
        previous = load(index_dir)
    except IndexUnavailable:
        return None
    same_model = previous.manifest["model"] == {"id": embedder.model_id, "version": embedder.model_version}
    return previous if same_model and previous.manifest["chunking"] == params else None


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _fsync_tree(folder: Path) -> None:
    for path in (p for p in folder.rglob("*") if p.is_file()):  # extras may write subfolders (onnx/)
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _no_progress(items: Iterable, total: int, label: str) -> Iterable:
    return items


def _batches(
    embedder: Embedder, texts: list[str], progress: Progress, label: str, budget: int = BATCH_TOKENS
) -> Iterator[list[int]]:
    """Positions of `texts` in batches of similar length, shortest first: a batch is padded to its longest text.

    Where the embedder counts the tokens it reads, texts are grouped by that count and a batch holds up to `budget`
    padded tokens (many short sentences, few long passages); otherwise by characters, 32 texts a batch.
    """
    if isinstance(embedder, SpanEmbedder):
        tokens = embedder.token_counts(texts)
        order = sorted(range(len(texts)), key=tokens.__getitem__)
        groups: list[list[int]] = []
        for position in order:
            if groups and (len(groups[-1]) + 1) * tokens[position] <= budget:
                groups[-1].append(position)
            else:
                groups.append([position])
    else:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        groups = [order[i : i + 32] for i in range(0, len(order), 32)]
    yield from progress(groups, len(groups), label)


def _embed(embedder: Embedder, texts: list[str], progress: Progress, label: str) -> np.ndarray:
    """Vectors of `texts`, in order."""
    vectors = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    for positions in _batches(embedder, texts, progress, label):
        vectors[positions] = embedder.encode([texts[j] for j in positions], batch_size=len(positions))
    return vectors


def _embed_passages(embedder: Embedder, chunks: list[Chunk], progress: Progress) -> tuple[np.ndarray, list | None]:
    """Passage vectors and, where the embedder can read spans in context, each passage's highlight vectors.

    A highlight vector is the mean of a sentence's token states in the pass over its whole passage (late chunking):
    the sentence read in context, where "it" and "this agreement" mean what the passage says. On the dev set the
    sentence these mark overlaps the evidence for 0.67 of the questions, against 0.60 for sentences embedded alone.
    """
    texts = [embedded_text(c) for c in chunks]
    if not isinstance(embedder, SpanEmbedder):
        return _embed(embedder, texts, progress, "passages"), None
    vectors = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    highlights: list = [None] * len(texts)
    for positions in _batches(embedder, texts, progress, "passages"):
        vectors[positions], spans = embedder.encode_in_context(
            [texts[j] for j in positions], [embedded_sentence_spans(chunks[j]) for j in positions]
        )
        for j, span_vectors in zip(positions, spans):
            highlights[j] = span_vectors
    return vectors, highlights


@dataclass
class Plan:
    """Which documents keep the live build's vectors and which are embedded, in corpus order.

    `parts[i]` holds document i's (passage, sentence, highlight) vectors: the live build's rows for a document whose
    bytes did not change, None until `embed` fills it for a new or changed one.
    """

    documents: list[Document]
    chunks: list[Chunk] = field(default_factory=list)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = field(default_factory=list)
    to_embed: list[tuple[int, list[Chunk]]] = field(default_factory=list)  # (position in parts, its chunks)


def plan(documents: list[Document], previous: Index | None, max_words: int, report: BuildReport) -> Plan:
    """Reuse the rows of every document `previous` holds with the same bytes and path (so the same format); chunk
    the others for embedding."""
    old_docs = previous.documents if previous else {}
    result = Plan(documents)
    for doc in documents:
        old = old_docs.get(doc.id)
        if previous is not None and old is not None and (old.sha256, old.path) == (doc.sha256, doc.path):
            first, last = previous.document_ranges[doc.id]
            result.chunks.extend(previous.chunks[first:last])
            rows = slice(previous.sentence_offsets[first], previous.sentence_offsets[last])
            result.parts.append(
                (previous.vectors[first:last], previous.sentence_vectors[rows], previous.highlight_vectors[rows])
            )
            report.unchanged.append(doc.id)
        else:
            doc_chunks = chunk_document(doc, max_words)
            result.to_embed.append((len(result.parts), doc_chunks))
            result.parts.append(None)  # filled by `embed`
            result.chunks.extend(doc_chunks)
            (report.changed if old is not None else report.added).append(doc.id)
    report.removed.extend(sorted(old_docs.keys() - {d.id for d in documents}))
    return result


def embed(planned: Plan, embedder: Embedder, progress: Progress) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embed the planned documents' chunks and sentences; all passage, sentence and highlight vectors, in order."""
    new_chunks = [c for _, group in planned.to_embed for c in group]
    passage_vectors, in_context = _embed_passages(embedder, new_chunks, progress)
    sentences = [sentence for c in new_chunks for sentence in c.sentence_texts()]
    sentence_vectors = _embed(embedder, sentences, progress, "sentences")
    # Without an in-context reading, a sentence's highlight vector is its own vector.
    highlight_vectors = np.concatenate(in_context) if in_context else sentence_vectors
    p = s = 0
    for position, group in planned.to_embed:
        n_sentences = sum(len(c.sentences) for c in group)
        planned.parts[position] = (
            passage_vectors[p : p + len(group)],
            sentence_vectors[s : s + n_sentences],
            highlight_vectors[s : s + n_sentences],
        )
        p += len(group)
        s += n_sentences
    filled = [part for part in planned.parts if part is not None]

    def stacked(kind: int) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate([part[kind] for part in filled]), dtype=np.float32)

    return stacked(0), stacked(1), stacked(2)


def write_staged(
    staging: Path,
    planned: Plan,
    vectors: tuple[np.ndarray, np.ndarray, np.ndarray],
    model: dict,
    params: dict,
    extras: Callable[[Path], dict] | None,
    skipped: list[SkippedFile],
) -> None:
    """Write every file of a build into `staging` and flush it to disk."""
    passages = vectors[0]
    chunks, documents = planned.chunks, planned.documents
    write_passages(staging, chunks, documents)
    ranges = document_ranges(chunks)
    counts = [ranges[d.id][1] - ranges[d.id][0] if d.id in ranges else 0 for d in documents]
    np.save(staging / "documents.chunks.npy", np.array(counts, dtype=np.int64))
    sentence_counts = [len(c.sentences) for c in chunks]
    np.save(staging / "sentences.offsets.npy", np.concatenate([[0], np.cumsum(sentence_counts)]).astype(np.int64))
    for name, array, dtype in zip(VECTOR_FILES, vectors, STORED_DTYPES):
        np.save(staging / name, array.astype(dtype, copy=False))
    faiss.write_index(make_faiss_index(passages), str(staging / "faiss.index"))
    section_of, centroids = section_centroids(chunks, passages)
    np.save(staging / "sections.npy", section_of)
    np.save(staging / "centroids.npy", centroids)
    texts = [embedded_text(c) for c in chunks]
    Postings.write(staging, texts)
    MappedVocabulary.write(staging, texts, STOPWORDS)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": model,
        "dimension": int(passages.shape[1]),
        "chunking": params,
        "files": {d.path: d.sha256 for d in documents},
        "skipped": {s.path: {"sha256": s.sha256, "reason": s.reason} for s in skipped},
        "documents": len(documents),
        "chunks": len(chunks),
        "faiss": "hnsw" if len(chunks) > APPROXIMATE_ABOVE else "flat",
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extras(staging) if extras else {}),
    }
    _write_json(staging / "manifest.json", manifest)
    _fsync_tree(staging)


def make_live(index_dir: Path, staging: Path, build_id: str) -> None:
    """Move the staged build into place, then point `CURRENT` at it (one atomic rename each)."""
    os.rename(staging, index_dir / BUILDS / build_id)
    pointer_tmp = index_dir / f".{POINTER}.{build_id}"
    pointer_tmp.write_text(build_id + "\n", encoding="utf-8")
    os.replace(pointer_tmp, index_dir / POINTER)


def build(
    corpus: Path,
    index_dir: Path,
    embedder: Embedder,
    max_words: int = MAX_WORDS,
    progress: Progress = _no_progress,
    extras: Callable[[Path], dict] | None = None,
) -> BuildReport:
    """Build the index for `corpus` into a new folder under `index_dir` and make it live.

    `extras(build_folder)` may write more files into the build before it goes live (the ONNX export) and returns
    what to record of them in the manifest. Concurrent builds of one index must take turns (`build_lock`).
    """
    began = time.perf_counter()
    params = chunking_params(max_words)
    previous = _reusable(index_dir, embedder, params)
    scanned = scan_corpus(corpus, known=previous.documents if previous else None)  # unchanged: not read again
    documents = scanned.documents
    if not documents:
        raise CorpusError(f"no readable documents in {corpus}")
    report = BuildReport(skipped=scanned.skipped)
    planned = plan(documents, previous, max_words, report)
    vectors = embed(planned, embedder, progress)
    build_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:6]
    builds = index_dir / BUILDS
    builds.mkdir(parents=True, exist_ok=True)
    staging = builds / f".staging-{build_id}"
    staging.mkdir()
    try:
        write_staged(
            staging,
            planned,
            vectors,
            {"id": embedder.model_id, "version": embedder.model_version},
            params,
            extras,
            scanned.skipped,
        )
        make_live(index_dir, staging, build_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    prune(index_dir)
    report.build_id, report.chunks, report.seconds = build_id, len(planned.chunks), time.perf_counter() - began
    return report


def prune(index_dir: Path, keep: int = KEEP_BUILDS) -> None:
    """Remove all but the newest `keep` builds (never the live one) and any staging folder left by a crash an hour
    ago or more (a younger one may be a build in progress; `build_lock` clears them all when it has the lock)."""
    builds = index_dir / BUILDS
    live = live_build(index_dir)
    finished = sorted((p for p in builds.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)
    for path in finished[keep:]:
        if path != live:
            shutil.rmtree(path, ignore_errors=True)
    for path in builds.glob(".staging-*"):
        if time.time() - path.stat().st_mtime > 3600:  # an abandoned build, not one in progress
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def build_lock(index_dir: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the index's build lock (`LOCK_FILE`, an OS file lock): builds of one index take turns.

    A second build waits for the first (`on_wait` is called once, to say so) rather than failing: `qa serve`
    builds a stale index before serving, and after waiting the index is usually up to date. The lock dies with its
    process, even under SIGKILL. Once it is held no other build is running, so every staging folder and pointer
    file a killed build left behind is abandoned, and is removed.
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(index_dir / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        remove_abandoned(index_dir)
        yield
    finally:
        lock.release()


def remove_abandoned(index_dir: Path) -> None:
    """Remove the staging folders and temporary pointer files of builds that did not finish (call with the lock)."""
    for path in (index_dir / BUILDS).glob(".staging-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in index_dir.glob(f".{POINTER}.*"):
        path.unlink(missing_ok=True)
