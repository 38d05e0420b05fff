"""The interface every format reader follows: a file's bytes in, the extracted text and its layout out.

A reader is a function `read(raw: bytes) -> Extracted`. `Extracted.text` is the one text of the document: it is
indexed, served to the reader page and the documents API, and every offset of the layout (and of every search
result) indexes it. Paged formats also say where each page starts in it. A file that cannot be read (encrypted,
truncated, broken, or a scan without a text layer) raises `UnreadableDocument` with a reason a person can act on.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from .layout import Block, BlockKind, Layout, assemble, is_byline


class UnreadableDocument(Exception):
    """A file of a supported format whose text cannot be extracted; `reason` says why, for the build log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Extracted:
    text: str
    layout: Layout
    pages: tuple[int, ...] = ()  # where each page starts in `text` (page 1 first); empty for unpaged formats


Reader = Callable[[bytes], Extracted]


def decode(raw: bytes) -> str:
    """UTF-8 with a BOM dropped and universal newlines, as `open(..., encoding="utf-8-sig")` reads it."""
    text = raw.decode("utf-8-sig")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def text_reader(parse: Callable[[str], Layout]) -> Reader:
    """A reader for a plain-text format: UTF-8 text (UnreadableDocument for a binary file or another encoding),
    then `parse`."""

    def read(raw: bytes) -> Extracted:
        if b"\x00" in raw:
            raise UnreadableDocument("binary file (NUL bytes), not text")
        try:
            text = decode(raw)
        except UnicodeDecodeError as exc:
            raise UnreadableDocument(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        return Extracted(text, parse(text))

    return read


def join_blocks(items: list[tuple[BlockKind, str]]) -> Extracted:
    """The text of a document given as (kind, text) blocks in reading order, blocks separated by a blank line.

    For formats whose reader yields whole blocks (Word, HTML): whitespace inside a block is collapsed (a table
    row's cells are kept on a line of their own); a paragraph right after the title that reads `By ...` is the
    byline.
    """
    parts: list[str] = []
    blocks: list[Block] = []
    length = 0
    for kind, raw_text in items:
        text = "\n".join(" ".join(line.split()) for line in raw_text.split("\n") if line.strip())
        if not text:
            continue
        if kind == "paragraph" and blocks and all(b.kind == "title" for b in blocks) and is_byline(text):
            kind = "byline"
        if kind == "title" and any(b.kind != "byline" for b in blocks):
            kind = "heading"  # a second title, or one after the text began, is a section
        if parts:
            parts.append("\n\n")
            length += 2
        blocks.append(Block(kind, length, length + len(text), "" if kind == "paragraph" else text))
        parts.append(text)
        length += len(text)
    return Extracted("".join(parts), assemble(blocks))


def page_span(pages: tuple[int, ...], start: int, end: int) -> tuple[int | None, int | None]:
    """The 1-based page a passage `start:end` starts on, and the page it ends on when that is a later one.

    (None, None) for an unpaged document; the second value is None when the passage stays on one page.
    """
    if not pages:
        return None, None
    first = max(1, bisect_right(pages, start))
    last = max(first, bisect_right(pages, max(start, end - 1)))
    return first, (last if last > first else None)
