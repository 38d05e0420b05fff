"""The HTML pages: the search form with its results, and the document reader. Server-rendered; JS only enhances."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request

from .index import IndexUnavailable
from .search import DEFAULT_K, MAX_QUERY_CHARS, QueryError

bp = Blueprint("pages", __name__)

MORE_STEP = 5


def marked_segments(text: str, offset: int, marks: list[dict]) -> list[tuple[str, bool]]:
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


def _searcher():
    from .app import index_holder

    return index_holder(current_app).get()


def error_page(status: int, message: str):
    return render_template("error.html", status=status, message=message), status


@bp.get("/")
def search_page():
    query = request.args.get("q", "")
    k = request.args.get("k", str(DEFAULT_K))
    k = int(k) if k.isdigit() and 1 <= int(k) <= 50 else DEFAULT_K
    document = request.args.get("document") or None
    context = {"query": query, "k": k, "document": document, "response": None, "error": None,
               "max_chars": MAX_QUERY_CHARS, "more_k": min(k + MORE_STEP, 50), "documents": [],
               "examples": []}
    try:
        searcher = _searcher()
    except IndexUnavailable:
        context["error"] = "The search index is not available right now. Please try again in a moment."
        return render_template("search.html", **context), 503
    context["documents"] = list(searcher.index.documents.values())
    context["examples"] = example_questions(searcher)
    if "q" in request.args:
        try:
            response = searcher.search(query, k, document)
        except QueryError as exc:
            context["error"] = friendly(exc)
            return render_template("search.html", **context), 400
        for r in response["results"]:
            r["segments"] = marked_segments(r["text"], r["start"], r["highlights"])
        context["response"] = response
    return render_template("search.html", **context)


def friendly(exc: QueryError) -> str:
    if "empty" in exc.message:
        return "Please type a question to search the document."
    if "characters" in exc.message:
        return f"That question is too long: please keep it under {MAX_QUERY_CHARS} characters."
    return f"That search could not be run: {exc.message}."


def example_questions(searcher) -> list[str]:
    """A few questions drawn from the documents' own section titles."""
    titles = [s.title for d in searcher.index.documents.values() for s in d.sections if s.title != "Introduction"]
    return [f"What does the document say about {t}?" for t in titles[:: max(1, len(titles) // 4)][:4]]


@bp.get("/documents")
def documents_page():
    try:
        docs = list(_searcher().index.documents.values())
    except IndexUnavailable:
        return error_page(503, "The search index is not available right now.")
    return render_template("documents.html", documents=docs)


@bp.get("/documents/<path:doc_id>")
def document_page(doc_id: str):
    try:
        searcher = _searcher()
    except IndexUnavailable:
        return error_page(503, "The search index is not available right now.")
    doc = searcher.index.documents.get(doc_id)
    if doc is None:
        abort(404, f"There is no document called “{doc_id}”.")
    query = request.args.get("q", "").strip()[:MAX_QUERY_CHARS]
    highlights: dict[int, list[dict]] = {}
    if query:
        try:
            response = searcher.search(query, 10, doc_id)
            highlights = {r["chunk"]: r["highlights"] for r in response["results"]}
        except QueryError:
            pass
    chunks = [c for c in searcher.index.chunks if c.document == doc_id]
    sections = []
    for i, section in enumerate(doc.sections):
        section_chunks = [c for c in chunks if c.section_index == i]
        sections.append({"title": section.title, "anchor": f"s-{i}", "chunks": [
            {"id": c.chunk, "paragraph": c.paragraph,
             "segments": marked_segments(c.text, c.start, highlights.get(c.chunk, []))}
            for c in section_chunks]})
    return render_template("document.html", doc=doc, sections=sections, query=query)
