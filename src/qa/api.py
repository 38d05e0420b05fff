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

from .index import IndexUnavailable
from .openapi import spec
from .search import DEFAULT_K, QueryError

bp = Blueprint("api", __name__, url_prefix="/api")
log = logging.getLogger(__name__)

_INTEGER = re.compile(r"-?[0-9]{1,6}")  # ASCII only: int() would also take " 5\n", "٥" or "5_0"
RETRY_AFTER_SECONDS = 5

HTTP_CODES = {400: "invalid_parameter", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
              415: "unsupported_media_type", 429: "rate_limited", 500: "internal_error", 503: "index_unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(http_status: int, code: str, message: str, **fields) -> Response:
    response = jsonify({**fields, "error": {"code": code, "message": message}})
    response.status_code = http_status
    if http_status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def is_api_request() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def searcher():
    from .app import index_holder

    try:
        return index_holder(current_app).get()
    except IndexUnavailable as exc:
        raise ApiError(503, "index_unavailable", str(exc)) from exc


def _query_string_params() -> dict:
    args = request.args
    params: dict = {"q": args.get("q", ""), "document": args.get("document") or None, "k": DEFAULT_K}
    if "k" in args:
        if not _INTEGER.fullmatch(args["k"]):
            raise QueryError("k must be an integer from 1 to 50")
        params["k"] = int(args["k"])
    return params


def _json_body() -> object:
    """The parsed body; lone surrogates and nesting too deep to parse are malformed JSON too."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "POST a JSON body with Content-Type: application/json")
    try:
        body = json.loads(request.get_data())
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # lone surrogates cannot be encoded
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", "the body is not valid JSON (UTF-8, no lone surrogates)") from exc
    return body


def _json_body_params() -> dict:
    body = _json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    if "q" not in body:
        raise QueryError("q is required")
    return {"q": body["q"], "k": body.get("k", DEFAULT_K), "document": body.get("document")}


@bp.route("/search", methods=["GET", "POST"])
def search():
    params = _json_body_params() if request.method == "POST" else _query_string_params()
    return jsonify(searcher().search(params["q"], params["k"], params["document"]))


@bp.get("/documents")
def documents():
    docs = searcher().index.documents.values()
    return jsonify({"documents": [
        {"id": d.id, "title": d.title, "byline": d.byline,
         "sections": [{"title": s.title, "start": s.start, "end": s.end} for s in d.sections]}
        for d in docs]})


@bp.get("/documents/<path:doc_id>")
def document(doc_id: str):
    """Looked up in the loaded index only: an id is a key, never a path, so `../` reaches nothing."""
    doc = searcher().index.documents.get(doc_id)
    if doc is None:
        raise ApiError(404, "not_found", f"no document {doc_id!r}")
    return jsonify({"id": doc.id, "title": doc.title, "byline": doc.byline, "text": doc.text,
                    "sections": [{"title": s.title, "start": s.start, "end": s.end} for s in doc.sections]})


@bp.get("/health")
def health():
    from .app import index_holder

    holder = index_holder(current_app)
    try:
        searcher = holder.get()
    except IndexUnavailable as exc:
        return error_response(503, "index_unavailable", str(exc), status="unavailable")
    body = {"status": "ok", "index": searcher.index.summary(),
            "query_encoder": searcher.embedder.encoder}
    if holder.error:
        body["warning"] = holder.error  # a newer build was refused; still serving this one
    return jsonify(body)


@bp.get("/openapi.json")
def openapi():
    from .app import index_holder

    served = index_holder(current_app).searcher
    return jsonify(spec(list(served.index.documents) if served else None))


@bp.errorhandler(QueryError)
def bad_query(exc: QueryError):
    return error_response(400, exc.code, exc.message)


@bp.errorhandler(ApiError)
def api_error(exc: ApiError):
    return error_response(exc.status, exc.code, exc.message)


def register_errors(app: Flask) -> None:
    """JSON errors for everything under /api/; HTML error pages for the rest."""
    from .pages import error_page

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        if not is_api_request():
            return error_page(status, exc.description or "")
        code = HTTP_CODES.get(status) or ("invalid_parameter" if status < 500 else "internal_error")
        response = error_response(status, code, exc.description or "")
        for name, value in exc.get_headers():  # Allow on a 405, for instance
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(IndexUnavailable)
    def unavailable(exc: IndexUnavailable):
        """The index went away mid-request (the PostgreSQL server unreachable): 503, as when none is loaded."""
        if not is_api_request():
            return error_page(503, str(exc))
        return error_response(503, "index_unavailable", str(exc))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        request_id = g.get("request_id", "-")
        log.exception("request %s failed: %s %s", request_id, request.method, request.path)
        message = f"internal error (request id {request_id})"
        return error_response(500, "internal_error", message) if is_api_request() else error_page(500, message)
