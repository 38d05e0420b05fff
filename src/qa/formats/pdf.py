"""PDF, read with PDFium (pypdfium2): text in reading order, pages, sections, and no running headers or footers.

Lines come from PDFium's text page in its reading order (multi-column pages included). For each line its first
and middle characters give its font size (the font size times the text matrix scale: some producers set every font
to size 1 and scale the matrix) and weight, and PDFium's loose boxes of its first and last characters its place.
Then:

- *Furniture*: lines in the top or bottom margin band (or set sideways) whose text, digits and roman numerals
  masked, repeats on many pages are dropped, and so are lines of a bare number (page and line numbers).
- *Sections*: from the outline (bookmarks) when there is one, each bookmark matched to the line at its destination;
  otherwise from the type: the body size is the most common size by characters, a heading is a short line without
  sentence-final punctuation set clearly larger than the body, or bold at body size and standing alone, and is
  followed below it by body text (chart labels and table cells are not). The first line of the first page, set
  largest, is the title.
- *Paragraphs*: a gap wider than the document's usual line spacing, a bullet, or an indented line after a sentence
  starts a new paragraph; a paragraph runs on across a column or page break unless a sentence ended on a line with
  room left. A word hyphenated at a line end is joined.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from .layout import Block, assemble, is_byline
from .reader import Extracted, UnreadableDocument

LINE_BREAK = "\r\n"  # PDFium's generated line break
SOFT_HYPHEN = "\ufffe"  # PDFium's mark for a hyphen at a line break
HEADING_SCALE = 1.15  # a heading is set at least this much larger than the body
MAX_HEADING_WORDS = 14
MAX_HEADING_CHARS = 120
MARGIN_BAND = 0.09  # share of the page height at top and bottom where running headers and footers sit
REPEATED_SHARE = 0.3  # furniture repeats on at least this share of the pages (and on two pages at least)
PARAGRAPH_GAP = 0.35  # a gap this many line heights wider than the usual space between lines starts a paragraph
SPREAD = 0.75  # a line wider than this many font sizes per character is spread over table cells: not a heading
BOLD_WEIGHT = 600
_SENTENCE_END = tuple('.!?:;,"”’')  # a heading does not end so
_PARAGRAPH_END = (".", "!", "?", ":", "”", '"', ")")  # a paragraph's last line may end so
_BULLETS = "•▪◦‣–-*"
_PAGE_NUMBER = re.compile(r"^(page\s*)?[#ivxlc]+(\s*(of|/)\s*[#ivxlc]+)?$")
_NUMBER_ONLY = re.compile(r"^[\d\s.,:()\-–/]{1,8}$")
_NUMBERED = re.compile(r"^(\d+(\.\d+)*|[IVXLC]+\.|[A-Z]\.)\s")  # a section number, often set off by a tab
_UNMAPPED = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")  # control characters
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")  # symbol-font glyphs, mostly bullets
_VISIBLE = re.compile(r"[^\s\x00-\x1f]")
_ROMAN = re.compile(r"\b[ivxlc]{1,6}\b")


@dataclass
class Line:
    page: int
    text: str
    hyphenated: bool  # ends with a word broken by a hyphen
    size: float
    bold: bool
    top: float
    bottom: float
    left: float
    right: float
    rotated: bool = False  # set sideways (a margin stamp)
    heading: str | None = None  # the section title this line starts (or continues), when it is a heading

    @property
    def height(self) -> float:
        return max(self.top - self.bottom, 1.0)


@dataclass
class Group:
    """Consecutive lines that make one block: a paragraph or a heading."""

    lines: list[Line] = field(default_factory=list)

    @property
    def heading(self) -> str | None:
        return self.lines[0].heading


def _clean(text: str) -> str:
    """Drop control characters and unmapped glyphs; private-use bullets become a bullet; whitespace collapsed."""
    return " ".join(_PRIVATE_USE.sub("•", _UNMAPPED.sub("", text)).split())


def _char_size(textpage, index: int) -> float:
    matrix = pdfium_c.FS_MATRIX()
    size = pdfium_c.FPDFText_GetFontSize(textpage, index)
    if pdfium_c.FPDFText_GetMatrix(textpage, index, matrix):
        size *= math.sqrt(abs(matrix.a * matrix.d - matrix.b * matrix.c)) or 1.0
    return size


def _page_lines(page_number: int, page) -> tuple[list[Line], float]:
    """The page's text lines, each with its size and weight (of its first and middle characters) and its box
    (the loose boxes of its first and last characters: one height for every line of a font and size)."""
    textpage = page.get_textpage()
    try:
        text = textpage.get_text_range()
        raw = textpage.raw
        box = pdfium_c.FS_RECTF()
        lines: list[Line] = []
        offset = 0
        aligned = len(text) == textpage.count_chars()  # char indices match string positions (no surrogates)
        for piece in text.split(LINE_BREAK):
            start, offset = offset, offset + len(piece) + len(LINE_BREAK)
            cleaned = _clean(piece)
            first = _VISIBLE.search(piece)
            if not cleaned or not first:
                continue
            first_at, last_at = start + first.start(), start + len(piece.rstrip()) - 1
            middle = (first.start() + len(piece.rstrip()) - 1) // 2
            middle_at = start + middle - piece[middle].isspace()  # a word's last letter, not the space after it
            if aligned:
                size = max(_char_size(raw, first_at), _char_size(raw, middle_at))
                bold = (
                    pdfium_c.FPDFText_GetFontWeight(raw, first_at) >= BOLD_WEIGHT
                    and pdfium_c.FPDFText_GetFontWeight(raw, middle_at) >= BOLD_WEIGHT
                )
                pdfium_c.FPDFText_GetLooseCharBox(raw, first_at, box)
                left, top, bottom = box.left, box.top, box.bottom
                pdfium_c.FPDFText_GetLooseCharBox(raw, last_at, box)
                right, top, bottom = box.right, max(top, box.top), min(bottom, box.bottom)
            else:
                size, bold, left, top, right, bottom = 0.0, False, 0.0, 0.0, 0.0, 0.0
            lines.append(
                Line(
                    page=page_number,
                    text=cleaned,
                    hyphenated=piece.rstrip().endswith((SOFT_HYPHEN, "\x02")),
                    size=round(size, 1),
                    bold=bold,
                    top=top,
                    bottom=bottom,
                    left=left,
                    right=right,
                    rotated=aligned and abs(math.sin(pdfium_c.FPDFText_GetCharAngle(raw, first_at))) > 0.5,
                )
            )
        return lines, page.get_height()
    finally:
        textpage.close()


def _furniture_key(text: str) -> str:
    masked = _ROMAN.sub("#", re.sub(r"\d+", "#", text.lower()))
    return " ".join(masked.split())


def remove_furniture(pages: list[tuple[list[Line], float]]) -> list[list[Line]]:
    """Drop running headers and footers (repeated in the margin bands, or set sideways) and bare page or line
    numbers."""

    def in_band(line: Line, height: float) -> bool:
        return line.rotated or line.bottom >= height * (1 - MARGIN_BAND) or line.top <= height * MARGIN_BAND

    seen: Counter[str] = Counter()
    for lines, height in pages:
        seen.update({_furniture_key(ln.text) for ln in lines if in_band(ln, height)})
    repeated = max(2, math.ceil(REPEATED_SHARE * len(pages)))
    kept = []
    for lines, height in pages:
        kept.append(
            [
                ln
                for ln in lines
                if not _NUMBER_ONLY.match(ln.text)
                and not (
                    in_band(ln, height)
                    and (seen[_furniture_key(ln.text)] >= repeated or _PAGE_NUMBER.match(_furniture_key(ln.text)))
                )
            ]
        )
    return kept


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _looks_like_heading(text: str) -> bool:
    if len(text) > MAX_HEADING_CHARS or text.endswith(_SENTENCE_END) or len(text.split()) > MAX_HEADING_WORDS:
        return False
    letters = sum(ch.isalpha() for ch in text)
    return letters >= 3 and letters >= len(text.replace(" ", "")) / 2


def _bookmark_match(line: Line, wanted: set[str], x: float | None, y: float | None) -> tuple[float, float]:
    """How well `line` matches a bookmark: the share of its title's words in the line, then nearness to its
    destination point (horizontal distance counts a quarter: a heading may be indented or centred)."""
    overlap = len(wanted & set(_words(line.text))) / max(len(wanted), 1)
    distance = 0.0 if y is None else abs(line.top - y) + (0 if x is None else abs(line.left - x) / 4)
    return overlap, -distance


def mark_outline_headings(document: pdfium.PdfDocument, pages: list[list[Line]]) -> bool:
    """Mark the line each bookmark points at as a heading titled by the bookmark; False without an outline."""
    marked = False
    heading_like: dict[int, list[Line]] = {}  # page -> its lines that could be headings
    for bookmark in document.get_toc():
        title = _clean(bookmark.get_title() or "")
        dest = bookmark.get_dest()
        index = dest.get_index() if dest is not None else None
        if not title or index is None or not 0 <= index < len(pages):
            continue
        wanted = set(_words(title))
        view = dest.get_view()[1] if dest is not None else []
        x, y = (view[0], view[1]) if len(view) >= 2 else (None, None)

        if index not in heading_like:
            heading_like[index] = [ln for ln in pages[index] if _looks_like_heading(ln.text)]
        candidates = [ln for ln in heading_like[index] if ln.heading is None]
        if y is not None:
            candidates = [ln for ln in candidates if y - 6 * ln.height <= ln.top <= y + 2 * ln.height]
        best = max(candidates, key=lambda line: _bookmark_match(line, wanted, x, y), default=None)
        if best is not None and _bookmark_match(best, wanted, x, y)[0] >= 0.5:
            best.heading = title
            marked = True
    return marked


def body_size(pages: list[list[Line]]) -> float:
    sizes: Counter[float] = Counter()
    for lines in pages:
        for ln in lines:
            sizes[ln.size] += len(ln.text)
    return sizes.most_common(1)[0][0] if sizes else 0.0


def paragraph_gap(pages: list[list[Line]]) -> float:
    """The gap (in line heights) above which a new paragraph starts: the usual gap between consecutive lines of
    the document (single or double spacing) plus PARAGRAPH_GAP."""
    gaps: Counter[float] = Counter()
    for lines in pages:
        for above, below in pairwise(lines):
            gap = _gap(above, below)
            if gap is not None and gap >= 0:
                gaps[round(gap, 1)] += 1
    return (gaps.most_common(1)[0][0] if gaps else 0.25) + PARAGRAPH_GAP


def _gap(above: Line, below: Line) -> float | None:
    """Vertical gap from `above` down to `below` in line heights; None when `below` is not below it."""
    if above.page != below.page or below.top > above.bottom + below.height * 0.5:
        return None
    return (above.bottom - below.top) / max(min(above.height, below.height), 1.0)


def _text_lefts(lines: list[Line], body: float) -> list[float]:
    """The left edges body text is set from (one per column): where at least a tenth as many lines start as at the
    most common edge."""
    lefts = Counter(round(ln.left) for ln in lines if abs(ln.size - body) <= 0.5 and not ln.bold)
    top = max(lefts.values(), default=0)
    return [float(x) for x, n in lefts.items() if n >= top / 10]


def _heading_runs(flat: list[Line], body: float, spacing: float) -> list[list[int]]:
    """Runs of consecutive heading-like lines of one size and weight (a heading set on several lines)."""
    runs: list[list[int]] = []
    for i, ln in enumerate(flat):
        larger = ln.size >= body * HEADING_SCALE
        spread = (ln.right - ln.left) > SPREAD * ln.size * len(ln.text) and not _NUMBERED.match(ln.text)
        if spread or not (_looks_like_heading(ln.text) and (larger or (ln.bold and abs(ln.size - body) <= 0.5))):
            continue
        prev = flat[runs[-1][-1]] if runs and runs[-1][-1] == i - 1 else None
        if (
            prev is not None
            and abs(prev.size - ln.size) < 0.3
            and prev.bold == ln.bold
            and (_gap(prev, ln) or spacing) < spacing
        ):
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def mark_type_headings(pages: list[list[Line]], spacing: float) -> None:
    """Headings by type: short lines clearly larger than the body, or bold at body size standing alone at a text
    edge; either way followed, below it, by body text (a chart label or table cell is followed by another label)."""
    body = body_size(pages)
    flat = [ln for lines in pages for ln in lines]
    lefts = _text_lefts(flat, body)
    for run in _heading_runs(flat, body, spacing):
        first, last = flat[run[0]], flat[run[-1]]
        following = flat[run[-1] + 1] if run[-1] + 1 < len(flat) else None
        if following is None or abs(following.size - body) > 0.5:
            continue
        if following.page == last.page and _gap(last, following) is None:
            continue  # the next text is above it: a label floating in a figure
        if first.size < body * HEADING_SCALE:  # bold at body size: must stand alone at a text edge
            before = _gap(flat[run[0] - 1], first) if run[0] else None
            after = _gap(last, following)
            alone = (before is None or before > spacing) and (after is None or after > spacing)
            if not alone or not any(abs(first.left - x) <= 2 for x in lefts):
                continue
        first.heading = " ".join(flat[i].text for i in run)
        for i in run[1:]:
            flat[i].heading = ""  # continuation of the heading above


def mark_title(pages: list[list[Line]], spacing: float) -> None:
    """The first line of the first page, when it is set largest on that page and larger than the body, is the
    title (with the lines of its size that follow it closely)."""
    first_page = pages[0] if pages else []
    if not first_page or first_page[0].heading is not None:
        return
    body = body_size(pages)
    run = _heading_runs(first_page, body, spacing)[:1]
    if (
        run
        and run[0][0] == 0
        and first_page[0].size >= max(ln.size for ln in first_page)
        and first_page[0].size >= body * HEADING_SCALE
    ):
        first_page[0].heading = " ".join(first_page[i].text for i in run[0])
        for i in run[0][1:]:
            first_page[i].heading = ""


def _left_room(prev: Line, line: Line, block_right: float) -> bool:
    """Whether `line`'s first word would clearly have fitted at the end of `prev`: then `prev` ended its paragraph.

    Widths are estimated from `prev`'s average character width, with two characters to spare: a paragraph wrongly
    run on is a smaller loss than one wrongly split, and spacing or an indent mark most paragraph breaks anyway.
    """
    char_width = (prev.right - prev.left) / max(len(prev.text), 1)
    first_word = line.text.split(" ", 1)[0]
    return prev.right + char_width * (len(first_word) + 3) <= block_right


def _starts_paragraph(prev: Line, line: Line, block_right: float, spacing: float) -> bool:
    ended = prev.text.endswith(_PARAGRAPH_END)
    gap = _gap(prev, line)
    if gap is not None and (gap > spacing or line.text[0] in _BULLETS):
        return True
    indented = gap is not None and line.left > prev.left + line.height
    # Across a column or page break too, a paragraph runs on unless a sentence ended where the line had room.
    return ended and (indented or _left_room(prev, line, block_right))


def group_lines(pages: list[list[Line]], spacing: float) -> list[Group]:
    groups: list[Group] = []
    block_right = 0.0
    for line in (ln for lines in pages for ln in lines):
        current = groups[-1] if groups else None
        if line.heading == "" and current is not None and current.heading:
            current.lines.append(line)
            continue
        if (
            current is None
            or line.heading is not None
            or current.heading is not None
            or _starts_paragraph(current.lines[-1], line, block_right, spacing)
        ):
            groups.append(Group([line]))
            block_right = line.right
        else:
            current.lines.append(line)
            block_right = max(block_right, line.right)
    return groups


def _joint(previous: Line, line: Line) -> str:
    """What joins two lines of a paragraph: a space; nothing after a word hyphenated at the line end ("co-" +
    "operation"); the hyphen itself before a capital or digit ("Russian-" + "Iranian")."""
    if not previous.hyphenated:
        return " "
    return "-" if line.text[:1].isupper() or line.text[:1].isdigit() else ""


def assemble_text(groups: list[Group], page_count: int) -> tuple[str, list[Block], tuple[int, ...]]:
    """The document text (blocks separated by a blank line), its blocks and where each page starts."""
    parts: list[str] = []
    blocks: list[Block] = []
    page_starts: list[int | None] = [None] * page_count
    length = 0
    for n, group in enumerate(groups):
        if n:
            parts.append("\n\n")
            length += 2
        start = length
        for i, line in enumerate(group.lines):
            if i:
                joint = _joint(group.lines[i - 1], line)
                parts.append(joint)
                length += len(joint)
            if page_starts[line.page] is None:
                page_starts[line.page] = length
            parts.append(line.text)
            length += len(line.text)
        if group.heading is not None:
            blocks.append(Block("heading", start, length, group.heading))
        else:
            blocks.append(Block("paragraph", start, length))
    following = length
    for page in reversed(range(page_count)):  # a page without text starts where the next text does
        if page_starts[page] is None:
            page_starts[page] = following
        following = page_starts[page]  # type: ignore[assignment]
    return "".join(parts), blocks, tuple(page_starts)  # type: ignore[arg-type]


def _title_and_byline(blocks: list[Block], groups: list[Group], text: str) -> list[Block]:
    """The first block is the title when it is a heading set largest on the first page; a `By ...` line follows."""
    if not blocks or blocks[0].kind != "heading" or groups[0].lines[0].page != 0:
        return blocks
    first_page = [g.lines[0].size for g in groups if g.lines[0].page == 0]
    if groups[0].lines[0].size < max(first_page):
        return blocks
    blocks = [Block("title", blocks[0].start, blocks[0].end, blocks[0].text), *blocks[1:]]
    if len(blocks) > 1 and blocks[1].kind == "paragraph" and is_byline(text[blocks[1].start : blocks[1].end]):
        blocks[1] = Block("byline", blocks[1].start, blocks[1].end, text[blocks[1].start : blocks[1].end])
    return blocks


def _open(raw: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(raw)
    except pdfium.PdfiumError as exc:
        message = str(exc).lower()
        if "password" in message:
            raise UnreadableDocument("encrypted PDF (a password is needed to open it)") from exc
        raise UnreadableDocument(f"damaged or truncated PDF ({exc})") from exc


def read(raw: bytes) -> Extracted:
    document = _open(raw)
    try:
        try:
            raw_pages = [_page_lines(n, document[n]) for n in range(len(document))]
        except pdfium.PdfiumError as exc:
            raise UnreadableDocument(f"damaged PDF page ({exc})") from exc
        if not any(lines for lines, _ in raw_pages):
            raise UnreadableDocument("no text layer; OCR is not supported")
        pages = remove_furniture(raw_pages)
        spacing = paragraph_gap(pages)
        if not mark_outline_headings(document, pages):
            mark_type_headings(pages, spacing)
        mark_title(pages, spacing)
        groups = group_lines(pages, spacing)
        text, blocks, page_starts = assemble_text(groups, len(pages))
        return Extracted(text, assemble(_title_and_byline(blocks, groups, text)), page_starts)
    finally:
        document.close()
