"""The JSON API under /api/: search, documents, health and its own OpenAPI description.

Every error has one shape, `{"error": {"code": ..., "message": ...}}`, with a stable code; no exception reaches a
client as a traceback.
"""

from __future__ import annotations

import json
import logging
import re

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import contract, live
from .documents import Document
from .index import IndexUnavailable
from .passages import DocumentSummary
from .openapi import spec
from .search import DEFAULT_K, QueryError, Searcher

bp = Blueprint("api", __name__, url_prefix="/api")
log = logging.getLogger(__name__)

API_PATH = re.compile(r"/api(/|$)")  # /api and everything under /api/
RETRY_AFTER_SECONDS = 5
Q_REQUIRED = "q is required"  # the same words for a GET and a POST without it


class ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def respond(body: contract.Shape, status: int = 200) -> Response:
    """A declared shape as the response (serialised by pydantic: the same bytes as `jsonify`, in a third the time)."""
    return Response(body.to_json() + "\n", status, mimetype="application/json")


def error_response(code: str, message: str) -> Response:
    """The one error shape, with the status its code is sent with (`contract.ERROR_STATUS`)."""
    return _error_response(contract.Error(error=contract.ErrorDetail(code=code, message=message)), code)


def _error_response(body: contract.Shape, code: str) -> Response:
    response = respond(body, contract.ERROR_STATUS[code])
    if response.status_code == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def is_api_request() -> bool:
    return API_PATH.match(request.path) is not None


def searcher() -> Searcher:
    try:
        return live.get_searcher()
    except IndexUnavailable as exc:
        raise ApiError("index_unavailable", str(exc)) from exc


def _query_string_params() -> dict:
    args = request.args
    if "q" not in args:
        raise QueryError(Q_REQUIRED)
    return {"q": args["q"], "document": args.get("document") or None, "k": contract.k_from_query_string(args.get("k"))}


def _json_body() -> object:
    """The parsed body; lone surrogates and nesting too deep to parse are malformed JSON too."""
    if not request.is_json:
        raise ApiError("unsupported_media_type", "POST a JSON body with Content-Type: application/json")
    try:
        body = json.loads(request.get_data())
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # lone surrogates cannot be encoded
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise ApiError("invalid_json", "the body is not valid JSON (UTF-8, no lone surrogates)") from exc
    return body


def _json_body_params() -> dict:
    body = _json_body()
    if not isinstance(body, dict):
        raise ApiError("invalid_json", "the body must be a JSON object")
    if "q" not in body:
        raise QueryError(Q_REQUIRED)
    return {"q": body["q"], "k": body.get("k", DEFAULT_K), "document": body.get("document")}


@bp.route("/search", methods=["GET", "POST"])
def search():
    params = _json_body_params() if request.method == "POST" else _query_string_params()
    found = searcher().search(params["q"], params["k"], params["document"])
    return respond(contract.SearchResponse.model_validate(found))


def _sections(doc: Document | DocumentSummary) -> list[contract.Section]:
    return [contract.Section(title=s.title, start=s.start, end=s.end) for s in doc.sections]


@bp.get("/documents")
def documents():
    docs = searcher().index.document_summaries
    return respond(
        contract.DocumentList(
            documents=[
                contract.DocumentSummary(id=d.id, title=d.title, byline=d.byline, sections=_sections(d)) for d in docs
            ]
        )
    )


@bp.get("/documents/<path:doc_id>")
def document(doc_id: str):
    """Looked up in the loaded index only: an id is a key, never a path, so `../` reaches nothing."""
    doc = searcher().index.documents.get(doc_id)
    if doc is None:
        raise ApiError("not_found", f"no document {doc_id!r}")
    return respond(
        contract.Document(
            id=doc.id,
            title=doc.title,
            byline=doc.byline,
            text=doc.text,
            sections=_sections(doc),
            pages=list(doc.pages) or None,
        )
    )


@bp.get("/health")
def health():
    holder = live.index_holder()
    try:
        searcher = holder.get()
        if holder.unreachable is not None:  # the database did not answer the last check
            raise IndexUnavailable(holder.unreachable)
    except IndexUnavailable as exc:
        detail = contract.ErrorDetail(code="index_unavailable", message=str(exc))
        return _error_response(contract.Unavailable(status="unavailable", error=detail), detail.code)
    refused = {"warning": holder.error} if holder.error else {}  # a newer build was refused; still serving this one
    return respond(
        contract.Health(
            status="ok",
            index=contract.IndexSummary(**searcher.index.summary()),
            query_encoder=searcher.embedder.encoder,
            **refused,
        )
    )


@bp.get("/openapi.json")
def openapi():
    served = live.index_holder().searcher
    return jsonify(spec(list(served.index.documents) if served else None))


@bp.errorhandler(QueryError)
def bad_query(exc: QueryError):
    return error_response(exc.code, exc.message)


@bp.errorhandler(ApiError)
def api_error(exc: ApiError):
    return error_response(exc.code, exc.message)


def body_limit_message() -> str:
    return f"the request body is over the limit of {current_app.config['MAX_CONTENT_LENGTH']:,} bytes"


def register_errors(app: Flask) -> None:
    """JSON errors for everything under /api/; HTML error pages for the rest."""
    from .pages import error_page

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        description = body_limit_message() if status == 413 else exc.description or ""
        if not is_api_request():
            return error_page(status, description)
        response = error_response(contract.error_code(status), description)
        response.status_code = status
        for name, value in exc.get_headers():  # Allow on a 405, for instance
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(IndexUnavailable)
    def unavailable(exc: IndexUnavailable):
        """The index went away mid-request (the PostgreSQL server unreachable): 503, as when none is loaded."""
        if not is_api_request():
            return error_page(503, str(exc))
        return error_response("index_unavailable", str(exc))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        request_id = g.get("request_id", "-")
        log.exception("request %s failed: %s %s", request_id, request.method, request.path)
        message = f"internal error (request id {request_id})"
        return error_response("internal_error", message) if is_api_request() else error_page(500, message)
