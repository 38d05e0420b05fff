"""The JSON contract of /api/: every shape the API takes or returns, declared once as a pydantic model.

The API builds its responses through these models, and /api/openapi.json is generated from them (`qa.openapi`), so
the description cannot drift from the responses. The bounds come from the search library's own constants; the
search library (`search.validate`) stays the one place that enforces them.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .search import DEFAULT_K, MAX_K, MAX_QUERY_CHARS, QueryError

# Exactly the characters str.strip() removes: a question of only these is empty (tests/test_fuzz.py checks the set).
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
NOT_ONLY_WHITESPACE = "[^" + "".join(f"\\u{ord(c):04x}" for c in WHITESPACE) + "]"

# The one table of error codes and the HTTP status each is sent with.
ERROR_STATUS: dict[str, int] = {
    "invalid_parameter": 400,
    "invalid_json": 400,
    "unsupported_media_type": 415,
    "payload_too_large": 413,
    "not_found": 404,
    "method_not_allowed": 405,
    "index_unavailable": 503,
    "rate_limited": 429,
    "internal_error": 500,
    # refused by the HTTP server itself, before the app (qa.worker)
    "uri_too_long": 414,
    "headers_too_large": 431,
    "bad_request": 400,
    "not_implemented": 501,
}

_INTEGER = re.compile(r"-?[0-9]{1,6}")  # ASCII only: int() would also take " 5\n", "٥" or "5_0"
K_RULE = f"k must be an integer from 1 to {MAX_K}"


def error_code(status: int) -> str:
    """The code for an HTTP error raised outside the API's own checks (a 404 or 405 from routing, say)."""
    return next(
        (code for code, s in ERROR_STATUS.items() if s == status),
        "invalid_parameter" if status < 500 else "internal_error",
    )


def k_from_query_string(raw: str | None) -> int:
    """`k` as a URL carries it: the default when absent, else the digits of an integer (range checked by search)."""
    if raw is None:
        return DEFAULT_K
    if not _INTEGER.fullmatch(raw):
        raise QueryError(K_RULE)
    return int(raw)


class Shape(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_json(self) -> str:
        """The JSON text: every field given, optional fields left out unless set (`byline: null` stays)."""
        return self.model_dump_json(exclude_unset=True)


# ---------------------------------------------------------------- requests


class SearchRequest(Shape):
    """The parameters of a search: in a query string (GET) or a JSON body (POST)."""

    q: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        pattern=NOT_ONLY_WHITESPACE,
        description=f"The question, in plain language: at most {MAX_QUERY_CHARS} characters, not only whitespace.",
    )
    k: int = Field(
        DEFAULT_K,
        ge=1,
        le=MAX_K,
        description="Number of passages. In a query string the digits of an integer; in JSON an integer.",
    )
    document: str | None = Field(
        None,
        description="Search only this document: an `id` from /api/documents "
        "(another value is a 400). Empty or null: all.",
    )


# ---------------------------------------------------------------- search


class Span(Shape):
    start: int
    end: int


class Result(Shape):
    """One ranked passage; offsets are character offsets into its document's text."""

    rank: int = Field(ge=1)
    score: float
    document: str
    document_title: str
    section: str
    chunk: int = Field(ge=0)
    paragraph: int = Field(ge=1)
    page: int | None = Field(
        None, ge=1, description="For a paged document (PDF): the 1-based page where the passage starts."
    )
    page_end: int | None = Field(None, ge=1, description="The last page, when the passage runs onto a later page.")
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    text: str
    highlights: list[Span]


class IndexStamp(Shape):
    """Which build answered."""

    built_at: str
    model: str
    chunks: int


class SearchResponse(Shape):
    query: str
    corrected_query: str | None = Field(
        None,
        description="The question as searched when a word the documents do "
        "not know was corrected to one they use; absent otherwise.",
    )
    answerable: bool
    confidence: float = Field(
        ge=0,
        le=1,
        description="The calibrated probability that the documents answer the "
        "question; `answerable` is `confidence` >= the threshold.",
    )
    took_ms: float
    results: list[Result] = Field(max_length=MAX_K)
    index: IndexStamp


# ---------------------------------------------------------------- documents


class Section(Shape):
    title: str
    start: int
    end: int


class DocumentSummary(Shape):
    id: str
    title: str
    byline: str | None = None
    sections: list[Section]


class DocumentList(Shape):
    documents: list[DocumentSummary]


class Document(Shape):
    """One document: its full text, the text every offset points into."""

    id: str
    title: str
    byline: str | None = None
    text: str
    sections: list[Section]
    pages: list[int] | None = Field(
        None, description="For a paged document (PDF): the character offset where each page starts."
    )


# ---------------------------------------------------------------- health and errors


class IndexSummary(Shape):
    build: str
    built_at: str
    model: str
    chunks: int
    documents: int


class Health(Shape):
    status: Literal["ok"]
    index: IndexSummary
    query_encoder: str = Field(
        description="`exact` or `int8` (the ONNX export; the `query_encoder` setting), or "
        "`sentence-transformers` for a build without an export."
    )
    warning: str | None = Field(None, description="Why a newer build was refused.")


class ErrorDetail(Shape):
    code: str = Field(json_schema_extra={"enum": list(ERROR_STATUS)})
    message: str


class Error(Shape):
    error: ErrorDetail


class Unavailable(Shape):
    """/api/health when no index is loaded."""

    status: Literal["unavailable"]
    error: ErrorDetail


SHAPES: tuple[type[Shape], ...] = (SearchRequest, SearchResponse, DocumentList, Document, Health, Unavailable, Error)
