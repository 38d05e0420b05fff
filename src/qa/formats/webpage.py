"""Web pages (`.html`, `.htm`): the main text only, with h1–h6 headings kept as sections.

trafilatura decides what the main text is: it leaves out navigation, cookie banners, asides and footers. It does not
always keep the headings, so the structure comes from the page itself: its block elements (headings, paragraphs,
list items, table rows, quotations) are read in document order, a block is kept when trafilatura kept its text, and
a heading is kept when the first block after it is. When trafilatura keeps nothing (or only headings: it drops a
list of links as navigation), the page's `<main>` (or else `<article>`) element is read whole instead.

The first `<h1>` before any text is the title; list items are paragraphs of their own; a table row is a paragraph
whose cells are separated by ` | `. trafilatura's minimum sizes are lowered so that a short page is read by its
main-text extraction rather than by its baseline, which would keep the navigation.
"""

from __future__ import annotations

import lxml.etree
import lxml.html
import trafilatura
from trafilatura.settings import use_config

from .layout import BlockKind
from .reader import Extracted, UnreadableDocument, join_blocks

_HEADINGS = {f"h{n}" for n in range(1, 7)}
_BLOCKS = _HEADINGS | {"p", "li", "tr", "blockquote", "pre", "dd", "dt", "figcaption"}
_CONFIG = use_config()
_CONFIG.set("DEFAULT", "MIN_EXTRACTED_SIZE", "1")
_CONFIG.set("DEFAULT", "MIN_OUTPUT_SIZE", "1")

Blocks = list[tuple[str, str]]  # (tag, text) in document order


def _text(element) -> str:
    return " ".join("".join(element.itertext()).split())


def page_blocks(container) -> Blocks:
    """The outermost block elements under `container`, in document order (a table row's cells joined by ` | `)."""
    blocks: Blocks = []
    for element in container.iter(*_BLOCKS):
        if any(ancestor.tag in _BLOCKS for ancestor in element.iterancestors()):
            continue
        if element.tag == "tr":
            text = " | ".join(cell for cell in (_text(c) for c in element if c.tag in ("td", "th")) if cell)
        else:
            text = _text(element)
        if text:
            blocks.append((element.tag, text))
    return blocks


def main_text(raw: bytes) -> str:
    """trafilatura's main text of the page, whitespace collapsed (empty when it finds none)."""
    extracted = trafilatura.extract(
        raw, output_format="txt", include_tables=True, include_comments=False, config=_CONFIG
    )
    return " ".join((extracted or "").split())


def kept_blocks(blocks: Blocks, main: str) -> Blocks:
    """The blocks whose text is in `main`, with each heading whose next block is kept, and the page's first `<h1>`
    when it comes before all of them (a title, even when trafilatura left out the byline under it)."""

    def in_main(tag: str, text: str) -> bool:
        return all(part in main for part in text.split(" | ")) if tag == "tr" else text in main

    kept: Blocks = []
    pending: Blocks = []  # headings waiting for the block after them
    title: tuple[str, str] | None = None
    for tag, text in blocks:
        if tag in _HEADINGS:
            pending.append((tag, text))
            if tag == "h1" and title is None and not kept:
                title = (tag, text)
        elif in_main(tag, text):
            kept.extend(pending)
            kept.append((tag, text))
            pending = []
        else:
            pending = []
    return [title, *kept] if title is not None and kept and kept[0] != title else kept


def _items(blocks: Blocks) -> list[tuple[BlockKind, str]]:
    items: list[tuple[BlockKind, str]] = []
    for tag, text in blocks:
        if tag in _HEADINGS:
            items.append(("title" if tag == "h1" and not items else "heading", text))
        else:
            items.append(("paragraph", text))
    return items


def read(raw: bytes) -> Extracted:
    try:
        root = lxml.html.fromstring(raw)
        main = main_text(raw)
        blocks = kept_blocks(page_blocks(root), main) if main else []
        if all(tag in _HEADINGS for tag, _ in blocks):
            container = next(iter(root.xpath("//main") or root.xpath("//article")), None)
            blocks = page_blocks(container) if container is not None else []
    except (lxml.etree.LxmlError, ValueError) as exc:
        raise UnreadableDocument(f"not a readable web page ({exc})") from exc
    extracted = join_blocks(_items(blocks))
    if not extracted.text:
        raise UnreadableDocument("no main text found in the web page")
    return extracted
