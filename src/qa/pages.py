"""The HTML pages: the search form with its results, the document list and the reader.

Server-rendered; JS only enhances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby

from flask import Blueprint, abort, render_template, request, url_for

from .chunking import Chunk
from .contract import k_from_query_string
from .documents import Document
from .formats.layout import INTRODUCTION
from .index import IndexUnavailable
from .passages import DocumentSummary
from .live import get_searcher
from .search import DEFAULT_K, MAX_K, MAX_QUERY_CHARS, QueryError, Searcher

bp = Blueprint("pages", __name__)

MORE_STEP = 5  # "More results" asks for this many more passages
EXAMPLE_COUNT = 4
EXAMPLE_TITLE_MAX_CHARS = 40  # longer section titles make clumsy example questions
EXAMPLE_QUESTION = "What does the document say about {}?"
GENERIC_SECTIONS = {
    INTRODUCTION.casefold(),
    "abstract",
    "conclusion",
    "conclusions",
    "references",
    "acknowledgements",
    "acknowledgments",
}  # titles that make no useful example question

EMPTY_QUERY = "Please type a question to search the document."
TOO_LONG_QUERY = f"That question is too long: please keep it to {MAX_QUERY_CHARS} characters or fewer."
INDEX_DOWN = "The search index is not available right now. Please try again in a moment."

Segments = list[tuple[str, bool]]  # (text, is_marked) runs


def marked_segments(text: str, offset: int, marks: list[dict]) -> Segments:
    """Split `text` (which starts at document offset `offset`) into (piece, is_marked) runs."""
    segments, cursor = [], 0
    for mark in sorted(marks, key=lambda m: m["start"]):
        a, b = max(mark["start"] - offset, cursor), min(mark["end"] - offset, len(text))
        if a >= b:
            continue
        segments += [(text[cursor:a], False), (text[a:b], True)]
        cursor = b
    segments.append((text[cursor:], False))
    return [s for s in segments if s[0]]


def error_page(status: int, message: str):
    return render_template("error.html", status=status, message=message), status


# ---------------------------------------------------------------- the search page


def passage_url(document: str, chunk: int, query: str | None = None) -> str:
    """Root-relative link to a passage in the reader; with `query`, its answering sentence is marked there."""
    return url_for("pages.document_page", doc_id=document, q=query, _anchor=f"c-{chunk}")


def result_view(result: dict, query: str) -> dict:
    """One result of `Searcher.search` with what the page shows besides: marked text and its links."""
    return {
        **result,
        "segments": marked_segments(result["text"], result["start"], result["highlights"]),
        "context_url": passage_url(result["document"], result["chunk"], query),
        "permalink": passage_url(result["document"], result["chunk"]),
    }


# the JS template's skeleton
BLANK_RESULT = {
    "rank": 0,
    "score": 0.0,
    "document": "",
    "document_title": "",
    "section": "",
    "chunk": 0,
    "paragraph": 0,
    "page": None,
    "segments": [],
    "context_url": "",
    "permalink": "",
}


def example_questions(documents: list[DocumentSummary], count: int = EXAMPLE_COUNT) -> list[str]:
    """A few questions about section titles spread through the documents."""
    titles = [
        s.title
        for d in documents
        for s in d.sections
        if s.title.casefold() not in GENERIC_SECTIONS and len(s.title) <= EXAMPLE_TITLE_MAX_CHARS
    ]
    step = max(1, len(titles) // count)
    return [EXAMPLE_QUESTION.format(title) for title in titles[step // 2 :: step][:count]]


def friendly(query: str, exc: QueryError) -> str:
    if not query.strip():
        return EMPTY_QUERY
    if len(query.strip()) > MAX_QUERY_CHARS:
        return TOO_LONG_QUERY
    return f"That search could not be run: {exc.message}."


@dataclass
class SearchPage:
    """Everything search.html shows."""

    query: str
    k: int
    document: str | None
    documents: list[DocumentSummary] = field(default_factory=list)
    response: dict | None = None
    error: str | None = None

    @property
    def asked(self) -> bool:
        return self.response is not None or self.error is not None

    @property
    def examples(self) -> list[str]:
        return example_questions(self.documents)

    @property
    def results(self) -> list[dict]:
        return [result_view(r, self.response["query"]) for r in self.response["results"]] if self.response else []

    @property
    def closest_only(self) -> bool:
        return self.response is not None and not self.response["answerable"]

    @property
    def more_url(self) -> str | None:
        """A plain link asking for more passages, when the page is full and more may exist."""
        if self.response is None or len(self.response["results"]) < self.k or self.k >= MAX_K:
            return None
        return url_for("pages.search_page", q=self.query, document=self.document, k=min(self.k + MORE_STEP, MAX_K))


@bp.get("/")
def search_page():
    page = SearchPage(request.args.get("q", ""), DEFAULT_K, request.args.get("document") or None)
    status = 200
    try:
        searcher = get_searcher()
        page.documents = searcher.index.document_summaries
        if "q" in request.args:
            page.k = k_from_query_string(request.args.get("k"))  # its range is checked by the search, as for the API
            page.response = searcher.search(page.query, page.k, page.document)
    except IndexUnavailable:
        page.error, status = INDEX_DOWN, 503
    except QueryError as exc:
        page.error, status = friendly(page.query, exc), 400
    return render_template(
        "search.html",
        page=page,
        blank_result=BLANK_RESULT,
        max_chars=MAX_QUERY_CHARS,
        default_k=DEFAULT_K,
        max_k=MAX_K,
        more_step=MORE_STEP,
    ), status


# ---------------------------------------------------------------- the documents and the reader


@bp.get("/documents")
def documents_page():
    try:
        docs = get_searcher().index.document_summaries
    except IndexUnavailable:
        return error_page(503, INDEX_DOWN)
    return render_template("documents.html", documents=docs)


@dataclass(frozen=True)
class Passage:
    chunk: int
    segments: Segments
    pages: tuple[int, ...] = ()  # the pages that begin in this passage (or in the space before it)


@dataclass(frozen=True)
class ReaderParagraph:
    number: int
    passages: list[Passage]


@dataclass(frozen=True)
class ReaderSection:
    title: str
    anchor: str
    paragraphs: list[ReaderParagraph]


def pages_begun(pages: tuple[int, ...], chunks: Sequence[Chunk]) -> list[tuple[int, ...]]:
    """For each chunk, the 1-based numbers of the pages that begin in it or between it and the chunk before."""
    begun, previous_end = [], 0
    for c in chunks:
        begun.append(tuple(n for n, offset in enumerate(pages, start=1) if previous_end <= offset < c.end))
        previous_end = c.end
    return begun


def reader_sections(doc: Document, chunks: Sequence[Chunk], highlights: dict[int, list[dict]]) -> list[ReaderSection]:
    """The document's sections, each a list of paragraphs made of its passages (chunks) in order."""
    paragraphs: dict[int, list[ReaderParagraph]] = {i: [] for i in range(len(doc.sections))}
    page_starts = dict(zip(chunks, pages_begun(doc.pages, chunks)))
    for (section, number), group in groupby(chunks, key=lambda c: (c.section_index, c.paragraph)):
        paragraphs[section].append(
            ReaderParagraph(
                number,
                [
                    Passage(c.chunk, marked_segments(c.text, c.start, highlights.get(c.chunk, [])), page_starts[c])
                    for c in group
                ],
            )
        )
    return [ReaderSection(s.title, f"s-{i}", paragraphs[i]) for i, s in enumerate(doc.sections)]


def answering_sentences(searcher: Searcher, query: str, doc_id: str) -> dict[int, list[dict]]:
    """chunk -> its sentence closest to `query`, for every passage a search result can link to.

    The server cannot see the `#c-<chunk>` fragment, so it marks them all; the stylesheet shows the mark only
    inside the passage that is the target of the link.
    """
    try:
        response = searcher.search(query, MAX_K, doc_id)
    except QueryError:
        return {}
    return {r["chunk"]: r["highlights"] for r in response["results"]}


@bp.get("/documents/<path:doc_id>")
def document_page(doc_id: str):
    try:
        searcher = get_searcher()
    except IndexUnavailable:
        return error_page(503, INDEX_DOWN)
    doc = searcher.index.documents.get(doc_id)
    if doc is None:
        abort(404, f"There is no document called “{doc_id}”.")
    query = request.args.get("q", "").strip()
    highlights = answering_sentences(searcher, query, doc_id) if query else {}
    first, last = searcher.index.document_ranges.get(doc_id, (0, 0))
    sections = reader_sections(doc, searcher.index.chunks[first:last], highlights)
    return render_template("document.html", doc=doc, sections=sections, query=query if highlights else "")
