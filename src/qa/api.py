"""The JSON API under /api/: search, documents, health and its own OpenAPI description.

Every error has one shape, `{"error": {"code": ..., "message": ...}}`, with a stable code.
"""

from __future__ import annotations

import json
import logging
import re

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from .index import IndexUnavailable
from .openapi import SPEC
from .search import DEFAULT_K, QueryError

bp = Blueprint("api", __name__, url_prefix="/api")
log = logging.getLogger(__name__)

_INTEGER = re.compile(r"^[+-]?\d{1,6}$")
RETRY_AFTER_SECONDS = 5

HTTP_CODES = {400: "invalid_parameter", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
              415: "unsupported_media_type", 429: "rate_limited", 503: "index_unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


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
        if not _INTEGER.match(args["k"]):
            raise QueryError("k must be an integer from 1 to 50")
        params["k"] = int(args["k"])
    return params


def _json_body_params() -> dict:
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "POST a JSON body with Content-Type: application/json")
    try:
        body = json.loads(request.get_data())
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # lone surrogates cannot be encoded
    except (ValueError, UnicodeError) as exc:
        raise ApiError(400, "invalid_json", "the body is not valid JSON (UTF-8, no lone surrogates)") from exc
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
        return jsonify({"status": "ok", "index": holder.get().index.summary()})
    except IndexUnavailable as exc:
        response = jsonify({"status": "unavailable", "error": {"code": "index_unavailable", "message": str(exc)}})
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


@bp.get("/openapi.json")
def openapi():
    return jsonify(SPEC)


@bp.errorhandler(QueryError)
def bad_query(exc: QueryError):
    return error_response(400, exc.code, exc.message)


@bp.errorhandler(ApiError)
def api_error(exc: ApiError):
    return error_response(exc.status, exc.code, exc.message)


def register_errors(app: Flask) -> None:
    """JSON errors for everything under /api/; the pages blueprint answers the rest with HTML."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if request.path.startswith("/api/"):
            return error_response(exc.code or 500, HTTP_CODES.get(exc.code or 500, "error"), exc.description or "")
        from .pages import error_page

        return error_page(exc.code or 500, exc.description or "")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("request %s failed", g.get("request_id", "-"))
        message = f"internal error (request id {g.get('request_id', '-')})"
        if request.path.startswith("/api/"):
            return error_response(500, "internal_error", message)
        from .pages import error_page

        return error_page(500, message)
