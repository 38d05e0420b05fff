"""The OpenAPI 3.0 description of the JSON API, served at /api/openapi.json.

It is checked against the running app by schemathesis (tests/test_fuzz.py): every status a client can meet is
listed with its body and headers, and `document` lists the ids of the index being served.
"""

from __future__ import annotations

from . import __version__
from .search import DEFAULT_K, MAX_K, MAX_QUERY_CHARS
from .server import MAX_REQUEST_LINE

# Exactly the characters str.strip() removes: a question of only these is empty (tests/test_fuzz.py checks the set).
WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
              "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
ERROR_CODES = ["invalid_parameter", "invalid_json", "unsupported_media_type", "payload_too_large", "not_found",
               "method_not_allowed", "index_unavailable", "rate_limited", "internal_error"]

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", "required": True,
                                "schema": {"type": "integer", "minimum": 1}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    return {**response, "headers": headers} if headers else response


def _error(description: str, headers: dict | None = None) -> dict:
    return _json(_ref("Error"), description, headers)


def _one_of(ids: list[str] | None, *extra: str | None) -> dict:
    """An enum of the served documents' ids (and `extra` values); no constraint when no index is loaded."""
    return {} if ids is None else {"enum": [*ids, *extra]}


_Q = {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS,
      "pattern": "[^" + "".join(f"\\u{ord(c):04x}" for c in WHITESPACE) + "]",
      "description": f"The question, in plain language: at most {MAX_QUERY_CHARS} characters, not only whitespace."}
_K = {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": DEFAULT_K,
      "description": "Number of passages. In a query string the digits of an integer; in JSON an integer."}
_DOCUMENT = "Search only this document: an `id` from /api/documents (another value is a 400)."
_UNAVAILABLE = _error("No index is loaded (`Retry-After` says when to try again).", _RETRY_AFTER)
_LIMITED = _error("Too many requests from this address (only when the server runs with a rate limit).", _RETRY_AFTER)
_RESULTS = _json(_ref("SearchResponse"), "Ranked passages")

_SCHEMAS = {
    "ErrorDetail": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string", "enum": ERROR_CODES}, "message": {"type": "string"}}},
    "Error": {"type": "object", "required": ["error"], "properties": {"error": _ref("ErrorDetail")}},
    "Span": {"type": "object", "required": ["start", "end"],
             "properties": {"start": {"type": "integer"}, "end": {"type": "integer"}}},
    "Result": {"type": "object", "required": [
        "rank", "score", "document", "document_title", "section", "chunk", "paragraph", "start", "end", "text",
        "highlights"],
        "properties": {
            "rank": {"type": "integer", "minimum": 1}, "score": {"type": "number"},
            "document": {"type": "string"}, "document_title": {"type": "string"},
            "section": {"type": "string"}, "chunk": {"type": "integer", "minimum": 0},
            "paragraph": {"type": "integer", "minimum": 1},
            "start": {"type": "integer", "minimum": 0}, "end": {"type": "integer", "minimum": 0},
            "text": {"type": "string"},
            "highlights": {"type": "array", "items": _ref("Span")}}},
    "SearchResponse": {"type": "object", "required": ["query", "answerable", "took_ms", "results", "index"],
                       "properties": {
                           "query": {"type": "string"}, "answerable": {"type": "boolean"},
                           "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                           "corrected_query": {"type": "string"},
                           "took_ms": {"type": "number"},
                           "results": {"type": "array", "maxItems": MAX_K, "items": _ref("Result")},
                           "index": {"type": "object", "required": ["built_at", "model", "chunks"]}}},
    "IndexSummary": {"type": "object", "required": ["build", "built_at", "model", "chunks", "documents"],
                     "properties": {"build": {"type": "string"}, "built_at": {"type": "string"},
                                    "model": {"type": "string"}, "chunks": {"type": "integer"},
                                    "documents": {"type": "integer"}}},
    "Section": {"type": "object", "required": ["title", "start", "end"],
                "properties": {"title": {"type": "string"}, "start": {"type": "integer"},
                               "end": {"type": "integer"}}},
    "DocumentSummary": {"type": "object", "required": ["id", "title", "sections"], "properties": {
        "id": {"type": "string"}, "title": {"type": "string"}, "byline": {"type": "string", "nullable": True},
        "sections": {"type": "array", "items": _ref("Section")}}},
    "Document": {"type": "object", "required": ["id", "title", "text", "sections"], "properties": {
        "id": {"type": "string"}, "title": {"type": "string"}, "byline": {"type": "string", "nullable": True},
        "text": {"type": "string"},
        "sections": {"type": "array", "items": _ref("Section")}}},
}

_INFO = {"title": "qa: question answering over documents", "version": __version__,
         "description": "Ranked, cited passages of the documents' own text. Offsets are character offsets into "
                        "the document text that /api/documents/{id} returns. Every error has the body "
                        "`{\"error\": {\"code\", \"message\"}}`: an unknown path under /api/ is a 404 and an "
                        "unsupported method a 405 (with `Allow`), both in that shape. Unknown parameters are "
                        "ignored."}


def _search(document_ids: list[str] | None) -> dict:
    return {
        "get": {
            "summary": "Passages that answer a question, best first",
            "description": f"The server takes a request line of at most {MAX_REQUEST_LINE} bytes: POST a long "
                           "question in a non-Latin script.",
            "parameters": [
                {"name": "q", "in": "query", "required": True, "schema": _Q},
                {"name": "k", "in": "query", "required": False, "schema": _K},
                {"name": "document", "in": "query", "required": False, "description": _DOCUMENT + " Empty: all.",
                 "schema": {"type": "string", **_one_of(document_ids, "")}},
            ],
            "responses": {"200": _RESULTS, "400": _error("Invalid parameter."), "429": _LIMITED,
                          "503": _UNAVAILABLE},
        },
        "post": {
            "summary": "The same search with a JSON body",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["q"], "properties": {
                    "q": _Q, "k": _K, "document": {"type": "string", "nullable": True, **_one_of(document_ids, None),
                                                   "description": _DOCUMENT + " Null: all."}}}}}},
            "responses": {"200": _RESULTS,
                          "400": _error("Invalid parameter, or malformed JSON (lone surrogates included)."),
                          "413": _error("Body over 16 kB."),
                          "415": _error("Content-Type is not application/json."),
                          "429": _LIMITED, "503": _UNAVAILABLE},
        },
    }


def _documents(document_ids: list[str] | None) -> dict:
    listing = {"get": {
        "summary": "The documents of the index and their sections",
        "responses": {"200": _json({"type": "object", "required": ["documents"], "properties": {
            "documents": {"type": "array", "items": _ref("DocumentSummary")}}}, "Documents"),
            "429": _LIMITED, "503": _UNAVAILABLE}}}
    one = {"get": {
        "summary": "One document of the index: title, full text and sections with offsets",
        "parameters": [{"name": "id", "in": "path", "required": True, "description": "A document id, not a path.",
                        "schema": {"type": "string", **_one_of(document_ids)}}],
        "responses": {"200": _json(_ref("Document"), "The document"),
                      "404": _error("No such document in the index."), "429": _LIMITED, "503": _UNAVAILABLE}}}
    return {"/api/documents": listing, "/api/documents/{id}": one}


_HEALTH = {"get": {
    "summary": "Whether an index is loaded, and which",
    "responses": {
        "200": _json({"type": "object", "required": ["status", "index", "query_encoder"], "properties": {
            "status": {"type": "string", "enum": ["ok"]}, "index": _ref("IndexSummary"),
            "query_encoder": {"type": "string", "description": "`exact` or `int8` (the ONNX export; the "
                                                                "`query_encoder` setting), or `sentence-transformers` "
                                                                "for a build without an export."},
            "warning": {"type": "string", "description": "Why a newer build was refused."}}}, "Serving"),
        "503": _json({"type": "object", "required": ["status", "error"], "properties": {
            "status": {"type": "string", "enum": ["unavailable"]}, "error": _ref("ErrorDetail")}},
            "No index loaded", _RETRY_AFTER)}}}

_OPENAPI = {"get": {"summary": "This description",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI document")}}}


def spec(document_ids: list[str] | None = None) -> dict:
    """The description, with the served index's document ids when there is one."""
    return {
        "openapi": "3.0.3",
        "info": _INFO,
        "paths": {"/api/search": _search(document_ids), **_documents(document_ids), "/api/health": _HEALTH,
                  "/api/openapi.json": _OPENAPI},
        "components": {"schemas": _SCHEMAS},
    }
