"""A build's passages and documents, read one record at a time: what `Index.chunks` and `Index.documents` are.

`Passages` and `Documents` are what a search and the pages ask of them, whatever holds the records: a file build
maps its files (`ChunkSequence`, `DocumentMapping`), a published build reads its rows (`postgres_store`). In a file
build each record is the JSON of a `Chunk` (`chunks.bin`) or a `Document` (`documents.bin`), end to end, with where
each begins (`tables.write_blob`). A worker parses only the records a request reads (the results' passages, a
document's page) instead of every record at start-up, and the bytes themselves are the page cache's, shared between
workers.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from .chunking import Chunk
from .documents import Document
from .formats.layout import Paragraph, Section
from .tables import Blob, DamagedTable, mapped, write_blob

DOCUMENT_CACHE = 32  # documents kept parsed in a worker: a search cites a few, each many times


def document_record(doc: Document) -> dict:
    return {
        "id": doc.id,
        "path": doc.path,
        "sha256": doc.sha256,
        "title": doc.title,
        "byline": doc.byline,
        "text": doc.text,
        "sections": [[s.title, s.start, s.end] for s in doc.sections],
        "paragraphs": [[p.start, p.end, p.section, p.number] for p in doc.paragraphs],
        "pages": list(doc.pages),
    }


def document_from_record(r: dict) -> Document:
    return Document(
        id=r["id"],
        path=r["path"],
        sha256=r["sha256"],
        title=r["title"],
        byline=r["byline"],
        text=r["text"],
        sections=tuple(Section(*s) for s in r["sections"]),
        paragraphs=tuple(Paragraph(*p) for p in r["paragraphs"]),
        pages=tuple(r.get("pages", ())),
    )


@dataclass(frozen=True)
class DocumentSummary:
    """What a listing of documents shows (the documents page, the search form's choice, `/api/documents`): a
    document without its text, so that listing an archive parses a small file instead of every document."""

    id: str
    title: str
    byline: str | None
    sections: tuple[Section, ...]
    paragraph_count: int


def summary_record(doc: Document) -> dict:
    return {
        "id": doc.id,
        "title": doc.title,
        "byline": doc.byline,
        "sections": [[s.title, s.start, s.end] for s in doc.sections],
        "paragraph_count": len(doc.paragraphs),
    }


def summary_from_record(r: dict) -> DocumentSummary:
    return DocumentSummary(
        r["id"], r["title"], r["byline"], tuple(Section(*s) for s in r["sections"]), r["paragraph_count"]
    )


def _json(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def write_passages(folder: Path, chunks: Sequence[Chunk], documents: Sequence[Document]) -> None:
    """`chunks.bin` and `documents.bin` (with their offsets), `documents.ids.json`, `documents.summary.json` and
    each document's page starts (`documents.pages.npy`, with offsets), in chunk id order."""
    write_blob(folder, "chunks", (_json(c.to_record()) for c in chunks))
    write_blob(folder, "documents", (_json(document_record(d)) for d in documents))
    (folder / "documents.ids.json").write_text(json.dumps([d.id for d in documents], ensure_ascii=False), "utf-8")
    summaries = [summary_record(d) for d in documents]
    (folder / "documents.summary.json").write_text(json.dumps(summaries, ensure_ascii=False), "utf-8")
    page_counts = [len(d.pages) for d in documents]
    np.save(folder / "documents.pages.npy", np.array([p for d in documents for p in d.pages], dtype=np.int64))
    np.save(folder / "documents.pages.offsets.npy", np.concatenate([[0], np.cumsum(page_counts, dtype=np.int64)]))


class Passages(Sequence[Chunk]):
    """`Index.chunks`: chunk i read from its record when asked for, none of them at opening."""

    def take(self, ids: Sequence[int]) -> list[Chunk]:
        """The chunks `ids`, in order (read together where each read is a round trip: a search's results)."""
        return [self[i] for i in ids]


class Documents(Mapping[str, Document]):
    """`Index.documents`: id -> `Document`, read from its record when asked for (the last `DOCUMENT_CACHE` kept),
    and what a result and a listing need of the documents without reading their text.

    `where` maps each id, in chunk id order, to what `_read` finds its record by.
    """

    def __init__(self, where: dict[str, int]) -> None:
        self.where = where
        self._parsed = lru_cache(maxsize=DOCUMENT_CACHE)(self._read)

    @abstractmethod
    def _read(self, where: int) -> Document:
        """The document whose record is at `where`."""

    @abstractmethod
    def page_starts(self, doc_id: str) -> tuple[int, ...]:
        """Where each page of a document starts in its text (empty for unpaged formats): a result's page numbers."""

    @property
    @abstractmethod
    def summaries(self) -> list[DocumentSummary]:
        """Every document's summary, in chunk id order (read once, when a listing first asks)."""

    def __getitem__(self, doc_id: str) -> Document:
        return self._parsed(self.where[doc_id])

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self.where

    def __iter__(self) -> Iterator[str]:
        return iter(self.where)

    def __len__(self) -> int:
        return len(self.where)


class ChunkSequence(Passages):
    """`Index.chunks` of a loaded build: chunk i parsed from its record when asked for."""

    def __init__(self, folder: Path) -> None:
        self.records = Blob(folder, "chunks")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [Chunk.from_record(json.loads(r)) for r in self.records[i]]
        return Chunk.from_record(json.loads(self.records[i]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]


class DocumentMapping(Documents):
    """`Index.documents` of a loaded build: each record found by its position in `documents.bin`."""

    def __init__(self, folder: Path) -> None:
        self.records = Blob(folder, "documents")
        ids = json.loads((folder / "documents.ids.json").read_text(encoding="utf-8"))
        if not isinstance(ids, list) or len(ids) != len(self.records):
            raise ValueError("documents.ids.json does not match documents.bin")
        super().__init__({doc_id: i for i, doc_id in enumerate(ids)})
        self.folder = folder
        if not (folder / "documents.summary.json").is_file():
            raise DamagedTable("documents.summary.json is missing")
        self.pages = mapped(folder / "documents.pages.npy")
        self.page_offsets = mapped(folder / "documents.pages.offsets.npy")
        if self.page_offsets.shape != (len(ids) + 1,) or int(self.page_offsets[-1]) != len(self.pages):
            raise DamagedTable("documents.pages.npy does not match its offsets")

    def page_starts(self, doc_id: str) -> tuple[int, ...]:
        """Without parsing the document (`documents.pages.npy`)."""
        position = self.where[doc_id]
        return tuple(self.pages[self.page_offsets[position] : self.page_offsets[position + 1]].tolist())

    @cached_property
    def summaries(self) -> list[DocumentSummary]:
        """Read from `documents.summary.json` the first time a listing asks."""
        records = json.loads((self.folder / "documents.summary.json").read_text(encoding="utf-8"))
        summaries = [summary_from_record(r) for r in records]
        if [s.id for s in summaries] != list(self.where):
            raise DamagedTable("documents.summary.json does not match documents.ids.json")
        return summaries

    def _read(self, where: int) -> Document:
        return document_from_record(json.loads(self.records[where]))


def ranges_from_counts(ids: Sequence[str], counts: np.ndarray) -> dict[str, tuple[int, int]]:
    """Each document's chunk id range, from the documents in chunk order and their numbers of chunks (a document
    without chunks has none, as in `index.document_ranges`)."""
    ends = np.cumsum(counts).tolist()
    return {doc_id: (end - n, end) for doc_id, end, n in zip(ids, ends, counts.tolist()) if n}
