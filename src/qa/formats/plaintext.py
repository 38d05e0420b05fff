"""Plain text: a heading is a short standalone line without sentence-final punctuation.

The first line is the title when it is a line of its own; a following `By ...` line is the byline; a line that
is only an image file name is dropped.
"""

from __future__ import annotations

from .layout import Block, Layout, assemble, is_byline, is_image_file_line, line_runs

MAX_HEADING_WORDS = 12
MAX_HEADING_CHARS = 100
_SENTENCE_END = tuple('.!?:;,"”’)]')


def is_heading(line: str) -> bool:
    stripped = line.strip()
    return (
        0 < len(stripped) <= MAX_HEADING_CHARS
        and len(stripped.split()) <= MAX_HEADING_WORDS
        and not stripped.endswith(_SENTENCE_END)
        and stripped[0].isalnum()
    )


def parse(text: str) -> Layout:
    blocks: list[Block] = []
    for start, end, lines in line_runs(text):
        single = len(lines) == 1
        line = text[start:end]
        if single and is_image_file_line(line):
            continue
        if not blocks and single and is_heading(line):
            blocks.append(Block("title", start, end, line))
        elif single and is_byline(line) and all(b.kind == "title" for b in blocks):
            blocks.append(Block("byline", start, end, line))
        elif single and is_heading(line):
            blocks.append(Block("heading", start, end, line))
        else:
            blocks.append(Block("paragraph", start, end))
    return assemble(blocks)
