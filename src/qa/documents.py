"""Reading the corpus: every file of a supported format (`formats.READERS`) under a folder is one document, unless
`check_readable` skips it.

Text documents are read as UTF-8 (a BOM dropped) with universal newlines; PDF, Word and HTML files by their format's
reader. Every offset in the project indexes the text a reader extracted.
A document's id is its path relative to the corpus folder, without extension, with `/` separators.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .formats import READERS, UnreadableDocument
from .formats.layout import Paragraph, Section
from .formats.reader import decode  # noqa: F401  (re-exported: how text documents are read)


class CorpusError(Exception):
    """The corpus cannot be indexed as it stands (missing folder, two files with one id)."""


@dataclass(frozen=True)
class Document:
    id: str
    path: str  # relative to the corpus folder
    sha256: str  # of the file's bytes
    title: str
    byline: str | None
    text: str
    sections: tuple[Section, ...]
    paragraphs: tuple[Paragraph, ...]
    pages: tuple[int, ...] = ()  # where each page starts in `text`, for paged formats (PDF)


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def corpus_files(corpus: Path) -> dict[str, Path]:
    """Map document id -> file for every supported file under `corpus`; two files with one id are an error."""
    if not corpus.is_dir():
        raise CorpusError(f"corpus folder not found: {corpus}")
    files: dict[str, Path] = {}
    for path in sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() in READERS):
        doc_id = path.relative_to(corpus).with_suffix("").as_posix()
        if doc_id in files:
            raise CorpusError(f"two files would share the document id {doc_id!r}: {files[doc_id]} and {path}")
        files[doc_id] = path
    return files


def parse_document(doc_id: str, relative_path: str, raw: bytes) -> Document:
    """Parse one file's bytes; raises UnreadableDocument for a file its format's reader cannot read."""
    extracted = READERS[Path(relative_path).suffix.lower()](raw)
    text, layout = extracted.text, extracted.layout
    return Document(
        id=doc_id,
        path=relative_path,
        sha256=hashlib.sha256(raw).hexdigest(),
        title=layout.title or Path(doc_id).name,
        byline=layout.byline,
        text=text,
        sections=tuple(layout.sections),
        paragraphs=tuple(layout.paragraphs),
        pages=extracted.pages,
    )


@dataclass(frozen=True)
class SkippedFile:
    path: str  # relative to the corpus folder
    sha256: str  # of the file's bytes (UNREADABLE_HASH when they cannot be read), so an unchanged file stays skipped
    reason: str


@dataclass(frozen=True)
class Corpus:
    documents: list[Document]  # in id order
    skipped: list[SkippedFile]  # in path order


UNREADABLE_HASH = "unreadable"


def fingerprint(path: Path) -> str:
    """The file's hash as the build records it; UNREADABLE_HASH for a file that cannot be opened."""
    try:
        return file_hash(path)
    except OSError:
        return UNREADABLE_HASH


def check_readable(doc_id: str, relative_path: str, raw: bytes) -> Document:
    """Parse one file into a document, or raise UnreadableDocument saying why it is not one.

    This is the one rule for which files are documents: the build, the freshness check, `qa info` and the reader all
    go through it. A file is skipped when its format's reader cannot read it (a text file that is binary or not
    UTF-8; an encrypted, broken or image-only PDF, say), when it is empty, or when it has no passage to index (only
    a title, headings or image lines).
    """
    doc = parse_document(doc_id, relative_path, raw)
    if not doc.text.strip():
        raise UnreadableDocument("empty file")
    if not doc.paragraphs:
        raise UnreadableDocument("no text to index (only a title, headings or image lines)")
    return doc


def read_document(corpus: Path, doc_id: str, path: Path) -> Document | SkippedFile:
    """Read one file: its document, or what was skipped and why."""
    relative = path.relative_to(corpus).as_posix()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return SkippedFile(relative, UNREADABLE_HASH, f"cannot be read ({exc.strerror or type(exc).__name__})")
    try:
        return check_readable(doc_id, relative, raw)
    except UnreadableDocument as exc:
        return SkippedFile(relative, hashlib.sha256(raw).hexdigest(), exc.reason)


def scan_corpus(corpus: Path, known: Mapping[str, Document] | None = None) -> Corpus:
    """Every file under `corpus` with a supported extension: the documents, and the files skipped with reasons.

    A file whose path and bytes are those of a `known` document (the previous build's) is taken from it, not
    extracted again.
    """
    documents: list[Document] = []
    skipped: list[SkippedFile] = []
    for doc_id, path in corpus_files(corpus).items():
        old = (known or {}).get(doc_id)
        if old is not None and old.path == path.relative_to(corpus).as_posix() and old.sha256 == fingerprint(path):
            documents.append(old)
            continue
        read = read_document(corpus, doc_id, path)
        (documents if isinstance(read, Document) else skipped).append(read)  # type: ignore[arg-type]
    return Corpus(documents, sorted(skipped, key=lambda s: s.path))


def read_corpus(corpus: Path) -> list[Document]:
    """Every readable document under `corpus`, in id order."""
    return scan_corpus(corpus).documents
