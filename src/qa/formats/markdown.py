"""Markdown: `#` headings of any level give sections; a leading `# ...` is the document title.

Metadata lines (`**Key:** value`), tables, image references and horizontal rules are not passages. Headings inside
fenced code blocks are not headings.
"""

from __future__ import annotations

import re

from .layout import Block, Layout, assemble, is_byline, is_image_file_line, line_runs

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_METADATA = re.compile(r"^\s*\*\*[^*]+:\*\*")
_IMAGE_REF = re.compile(r"^\s*!\[[^\]]*\]\([^)]*\)\s*$")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")


def _is_noise(line: str) -> bool:
    stripped = line.strip()
    return bool(
        stripped.startswith("|")
        or _METADATA.match(line)
        or _IMAGE_REF.match(line)
        or _RULE.match(line)
        or is_image_file_line(line)
    )


def _blocks_of_run(lines: list[tuple[int, str]], in_fence: bool) -> tuple[list[Block], bool]:
    """Split one run of lines at its headings; drop noise lines at the edges of each paragraph."""
    blocks: list[Block] = []
    kept: list[tuple[int, str]] = []

    def flush() -> None:
        body = [(s, ln) for s, ln in kept if not _is_noise(ln)] if not any(_FENCE.match(ln) for _, ln in kept) else kept
        if body:
            start = body[0][0] + len(body[0][1]) - len(body[0][1].lstrip())
            end = body[-1][0] + len(body[-1][1].rstrip())
            blocks.append(Block("paragraph", start, end))
        kept.clear()

    for line_start, line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line)
        if heading:
            flush()
            level, title = len(heading.group(1)), heading.group(2).strip()
            kind = "title" if level == 1 else "heading"
            blocks.append(Block(kind, line_start, line_start + len(line.rstrip()), title))
        else:
            kept.append((line_start, line))
    flush()
    return blocks, in_fence


def parse(text: str) -> Layout:
    blocks: list[Block] = []
    in_fence = False
    for _, _, lines in line_runs(text):
        run_blocks, in_fence = _blocks_of_run(lines, in_fence)
        for block in run_blocks:
            seen_content = any(b.kind in ("paragraph", "heading") for b in blocks)
            if block.kind == "title" and (seen_content or any(b.kind == "title" for b in blocks)):
                block = Block("heading", block.start, block.end, block.text)  # a later `#` is a section
            elif block.kind == "paragraph" and not seen_content and is_byline(text[block.start : block.end]):
                block = Block("byline", block.start, block.end, text[block.start : block.end])
            blocks.append(block)
    return assemble(blocks)
