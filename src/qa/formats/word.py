"""Word documents (`.docx`), read with python-docx: paragraphs and tables in body order, headers and footers left out.

A paragraph is a heading when its style is `Title` or `Heading N`, or is based on one of them (its `base_style`
chain), or when it or its style sets an outline level. A table is one paragraph with a line per row, cells
separated by ` | `.
"""

from __future__ import annotations

import io
import re
import zipfile

import docx
import docx.opc.exceptions
from docx.oxml.ns import qn
from docx.table import Table
from docx.text.paragraph import Paragraph

from .layout import BlockKind
from .reader import Extracted, UnreadableDocument, join_blocks

_HEADING_STYLE = re.compile(r"^(Title|Heading \d)$")


def _outline_level(element) -> bool:
    """Whether a paragraph's or style's properties set an outline level (body text is level 9, or none)."""
    ppr = element.find(qn("w:pPr"))
    level = ppr.find(qn("w:outlineLvl")) if ppr is not None else None
    return level is not None and level.get(qn("w:val")) not in (None, "9")


def _kind(paragraph: Paragraph) -> BlockKind:
    style = paragraph.style
    if _outline_level(paragraph._p):
        return "heading"
    while style is not None:
        if _HEADING_STYLE.match(style.name or ""):
            return "title" if style.name == "Title" else "heading"
        if _outline_level(style.element):
            return "heading"
        style = style.base_style
    return "paragraph"


def _table_text(table: Table) -> str:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if text and (not cells or cells[-1] != text):  # a merged cell is repeated once per grid column
                cells.append(text)
        rows.append(" | ".join(cells))
    return "\n".join(rows)


def read(raw: bytes) -> Extracted:
    try:
        document = docx.Document(io.BytesIO(raw))
        items: list[tuple[BlockKind, str]] = []
        for element in document.element.body.iterchildren():
            if element.tag == qn("w:p"):
                paragraph = Paragraph(element, document)
                items.append((_kind(paragraph), paragraph.text))
            elif element.tag == qn("w:tbl"):
                items.append(("paragraph", _table_text(Table(element, document))))
    except (docx.opc.exceptions.PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UnreadableDocument(f"not a readable Word file ({type(exc).__name__}: {exc})") from exc
    extracted = join_blocks(items)
    if not extracted.text:
        raise UnreadableDocument("the Word file has no text")
    return extracted
