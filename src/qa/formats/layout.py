"""What every format reader produces: a document's title, byline, sections and paragraphs as character offsets.

A format reader turns text into a list of *blocks* (title, byline, heading, paragraph); :func:`assemble` turns
those into sections and numbered paragraphs, the same way for every format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator, Literal

INTRODUCTION = "Introduction"

BlockKind = Literal["title", "byline", "heading", "paragraph"]

_IMAGE_FILE = re.compile(r"^[\w.\-]+\.(?:jpe?g|png|gif|webp|svg|bmp|tiff?)$", re.IGNORECASE)


@dataclass(frozen=True)
class Block:
    kind: BlockKind
    start: int
    end: int
    text: str = ""  # heading, title or byline text, trimmed


@dataclass(frozen=True)
class Section:
    title: str
    start: int
    end: int


@dataclass(frozen=True)
class Paragraph:
    start: int
    end: int
    section: int  # index into Layout.sections
    number: int  # 1-based within its section: the "¶ n" of a citation


@dataclass
class Layout:
    title: str | None
    byline: str | None
    sections: list[Section] = field(default_factory=list)
    paragraphs: list[Paragraph] = field(default_factory=list)


def line_runs(text: str) -> Iterator[tuple[int, int, list[tuple[int, str]]]]:
    """Yield runs of consecutive non-blank lines as (start, end, [(line_start, line), ...]).

    `start`/`end` are trimmed of surrounding whitespace (U+00A0 included), so `text[start:end]` is the run's text.
    """
    run: list[tuple[int, str]] = []
    pos = 0
    for line in text.split("\n") + [""]:
        if line.strip():
            run.append((pos, line))
        elif run:
            first_start, first = run[0]
            last_start, last = run[-1]
            start = first_start + (len(first) - len(first.lstrip()))
            yield start, last_start + len(last.rstrip()), run
            run = []
        pos += len(line) + 1


def is_image_file_line(line: str) -> bool:
    """A line that is only an image file name (a caption-less photo reference), not prose."""
    return bool(_IMAGE_FILE.match(line.strip()))


def is_byline(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith("By ") and len(stripped.split()) <= 20


def assemble(blocks: list[Block]) -> Layout:
    """Group paragraphs under the heading before them; text before the first heading is `Introduction`."""
    layout = Layout(title=None, byline=None)
    open_section: tuple[str, int] | None = None  # (title, start) of the section being filled
    numbered: list[tuple[int, int]] = []  # paragraphs of the open section

    def close(end: int) -> None:
        if open_section is None:
            return
        index = len(layout.sections)
        layout.sections.append(Section(open_section[0], open_section[1], end))
        layout.paragraphs.extend(Paragraph(s, e, index, n) for n, (s, e) in enumerate(numbered, start=1))

    for block in blocks:
        if block.kind == "title":
            layout.title = block.text
        elif block.kind == "byline":
            layout.byline = block.text
        elif block.kind == "heading":
            close(block.start)
            open_section, numbered = (block.text, block.start), []
        else:
            if open_section is None:
                open_section, numbered = (INTRODUCTION, block.start), []
            numbered.append((block.start, block.end))
    if blocks:
        close(max(b.end for b in blocks))
    return layout
