"""Reading the corpus: every file of a supported format (`formats.READERS`) under a folder is one document.

Text documents are read as UTF-8 (a BOM dropped) with universal newlines; PDF, Word and HTML files by their format's
reader. Every offset in the project indexes the text a reader extracted.
A document's id is its path relative to the corpus folder, without extension, with `/` separators.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .formats import READERS, UnreadableDocument
from .formats.layout import Paragraph, Section
from .formats.reader import decode  # noqa: F401  (re-exported: how text documents are read)

log = logging.getLogger(__name__)


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
    """Parse one file's bytes; raises UnicodeDecodeError for text that is not UTF-8 and UnreadableDocument for a
    file its format's reader cannot read."""
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


def read_document(corpus: Path, doc_id: str, path: Path) -> Document | None:
    """Read one file; a file that cannot be decoded is logged and skipped (None)."""
    try:
        return parse_document(doc_id, path.relative_to(corpus).as_posix(), path.read_bytes())
    except UnicodeDecodeError as exc:
        log.warning("skipped %s: not UTF-8 text (%s)", path, exc.reason)
        return None
    except UnreadableDocument as exc:
        log.warning("skipped %s: %s", path, exc.reason)
        return None


def read_corpus(corpus: Path, known: Mapping[str, Document] | None = None) -> list[Document]:
    """Every readable document under `corpus`, in id order; a file whose bytes are those of a `known` document
    (the previous build's) is taken from it, not extracted again."""
    documents = []
    for doc_id, path in corpus_files(corpus).items():
        old = (known or {}).get(doc_id)
        if old is not None and old.path == path.relative_to(corpus).as_posix() and old.sha256 == file_hash(path):
            documents.append(old)
        elif (doc := read_document(corpus, doc_id, path)) is not None:
            documents.append(doc)
    return documents
