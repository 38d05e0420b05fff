"""Web pages (`.html`, `.htm`): the main text only, read by trafilatura, with h1–h6 headings kept as sections.

trafilatura leaves out navigation, cookie banners, asides and footers. When it finds no main text (nothing, or
headings only: it drops a list of links as navigation), the page's `<main>` (or else `<article>`) element is read
instead. trafilatura's minimum sizes are lowered so that a short page is read by its main-text extraction rather
than by its baseline, which would keep the navigation. The first `<h1>` before any text is the title; list items
are paragraphs of their own; a table is one paragraph with a line per row, cells separated by ` | `.
"""

from __future__ import annotations

import lxml.etree
import lxml.html
import trafilatura
from trafilatura.settings import use_config

from .layout import BlockKind
from .reader import Extracted, UnreadableDocument, join_blocks

_HEADINGS = {f"h{n}" for n in range(1, 7)}
_FALLBACK_BLOCKS = _HEADINGS | {"p", "li", "tr", "blockquote", "pre", "dd", "dt"}
_CONFIG = use_config()
_CONFIG.set("DEFAULT", "MIN_EXTRACTED_SIZE", "1")
_CONFIG.set("DEFAULT", "MIN_OUTPUT_SIZE", "1")


def _text(element) -> str:
    return " ".join("".join(element.itertext()).split())


def _table(element, row_tag: str, cell_tags: tuple[str, ...]) -> str:
    rows = []
    for row in element.iter(row_tag):
        cells = [_text(cell) for cell in row if cell.tag in cell_tags]
        rows.append(" | ".join(cell for cell in cells if cell))
    return "\n".join(rows)


def _heading_kind(level_name: str, items: list[tuple[BlockKind, str]]) -> BlockKind:
    return "title" if level_name == "h1" and not items else "heading"


def _from_trafilatura(raw: bytes) -> list[tuple[BlockKind, str]]:
    xml = trafilatura.extract(raw, output_format="xml", include_tables=True, include_comments=False,
                              config=_CONFIG)
    if not xml:
        return []
    main = lxml.etree.fromstring(xml.encode("utf-8")).find("main")
    items: list[tuple[BlockKind, str]] = []
    for element in (main if main is not None else []):
        if element.tag == "head":
            items.append((_heading_kind(element.get("rend", "h2"), items), _text(element)))
        elif element.tag == "list":
            items.extend(("paragraph", _text(item)) for item in element.iter("item"))
        elif element.tag == "table":
            items.append(("paragraph", _table(element, "row", ("cell",))))
        else:
            items.append(("paragraph", _text(element)))
    return items


def _from_main_element(raw: bytes) -> list[tuple[BlockKind, str]]:
    """The blocks of the page's `<main>` or `<article>` element, outermost block elements only."""
    root = lxml.html.fromstring(raw)
    container = next(iter(root.xpath("//main") or root.xpath("//article")), None)
    if container is None:
        return []
    items: list[tuple[BlockKind, str]] = []
    for element in container.iter(*_FALLBACK_BLOCKS):
        if any(ancestor.tag in _FALLBACK_BLOCKS for ancestor in element.iterancestors()):
            continue
        if element.tag in _HEADINGS:
            items.append((_heading_kind(element.tag, items), _text(element)))
        elif element.tag == "tr":
            items.append(("paragraph", " | ".join(_text(c) for c in element if c.tag in ("td", "th"))))
        else:
            items.append(("paragraph", _text(element)))
    return items


def read(raw: bytes) -> Extracted:
    try:
        items = _from_trafilatura(raw)
        if not any(kind == "paragraph" for kind, _ in items):
            items = _from_main_element(raw)
    except (lxml.etree.LxmlError, ValueError) as exc:
        raise UnreadableDocument(f"not a readable web page ({exc})") from exc
    extracted = join_blocks(items)
    if not extracted.text:
        raise UnreadableDocument("no main text found in the web page")
    return extracted
