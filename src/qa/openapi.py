"""The OpenAPI 3.0 description of the JSON API, served at /api/openapi.json."""

from __future__ import annotations

from . import __version__
from .search import MAX_K, MAX_QUERY_CHARS


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


_Q = {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS, "pattern": r"\S",
      "description": "The question, in plain language."}
_K = {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 5, "description": "Number of passages."}
_DOCUMENT = {"type": "string", "description": "Search only this document (its id)."}
_UNAVAILABLE = _error("No index is loaded (`Retry-After` says when to try again).")
_NOT_FOUND = _error("No such document.")

SPEC: dict = {
    "openapi": "3.0.3",
    "info": {"title": "qa: question answering over documents", "version": __version__,
             "description": "Ranked, cited passages of the documents' own text. Offsets are character offsets "
                            "into the document text that /api/documents/{id} returns."},
    "paths": {
        "/api/search": {
            "get": {
                "summary": "Passages that answer a question, best first",
                "parameters": [
                    {"name": "q", "in": "query", "required": True, "schema": _Q},
                    {"name": "k", "in": "query", "required": False, "schema": _K},
                    {"name": "document", "in": "query", "required": False, "schema": _DOCUMENT},
                ],
                "responses": {"200": {"description": "Ranked passages",
                                      "content": {"application/json": {"schema": {
                                          "$ref": "#/components/schemas/SearchResponse"}}}},
                              "400": _error("Invalid parameter."), "503": _UNAVAILABLE},
            },
            "post": {
                "summary": "The same search with a JSON body",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["q"],
                    "properties": {"q": _Q, "k": _K, "document": _DOCUMENT}}}}},
                "responses": {"200": {"description": "Ranked passages",
                                      "content": {"application/json": {"schema": {
                                          "$ref": "#/components/schemas/SearchResponse"}}}},
                              "400": _error("Invalid parameter or malformed JSON."),
                              "413": _error("Body over 16 kB."),
                              "415": _error("Content-Type is not application/json."),
                              "503": _UNAVAILABLE},
            },
        },
        "/api/documents": {"get": {
            "summary": "The documents of the corpus and their sections",
            "responses": {"200": {"description": "Documents", "content": {"application/json": {"schema": {
                "type": "object", "required": ["documents"],
                "properties": {"documents": {"type": "array", "items": {
                    "$ref": "#/components/schemas/DocumentSummary"}}}}}}},
                "503": _UNAVAILABLE}}},
        "/api/documents/{id}": {"get": {
            "summary": "One document: title, full text and sections with offsets",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The document", "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/Document"}}}},
                "404": _NOT_FOUND, "503": _UNAVAILABLE}}},
        "/api/health": {"get": {
            "summary": "Whether an index is loaded",
            "responses": {"200": {"description": "Serving", "content": {"application/json": {"schema": {
                "type": "object", "required": ["status", "index"],
                "properties": {"status": {"type": "string", "enum": ["ok"]}, "index": {"type": "object"}}}}}},
                "503": {"description": "No index loaded", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["status"],
                    "properties": {"status": {"type": "string", "enum": ["unavailable"]},
                                   "error": {"type": "object"}}}}}}}}},
        "/api/openapi.json": {"get": {
            "summary": "This description",
            "responses": {"200": {"description": "OpenAPI document",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    },
    "components": {"schemas": {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string", "enum": [
                "invalid_parameter", "invalid_json", "unsupported_media_type", "payload_too_large", "not_found",
                "method_not_allowed", "index_unavailable", "rate_limited", "internal_error"]},
                "message": {"type": "string"}}}}},
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
                "highlights": {"type": "array", "items": {"$ref": "#/components/schemas/Span"}}}},
        "SearchResponse": {"type": "object", "required": ["query", "answerable", "took_ms", "results", "index"],
                           "properties": {
                               "query": {"type": "string"}, "answerable": {"type": "boolean"},
                               "took_ms": {"type": "number"},
                               "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}},
                               "index": {"type": "object"}}},
        "Section": {"type": "object", "required": ["title", "start", "end"],
                    "properties": {"title": {"type": "string"}, "start": {"type": "integer"},
                                   "end": {"type": "integer"}}},
        "DocumentSummary": {"type": "object", "required": ["id", "title", "sections"], "properties": {
            "id": {"type": "string"}, "title": {"type": "string"}, "byline": {"type": "string", "nullable": True},
            "sections": {"type": "array", "items": {"$ref": "#/components/schemas/Section"}}}},
        "Document": {"type": "object", "required": ["id", "title", "text", "sections"], "properties": {
            "id": {"type": "string"}, "title": {"type": "string"}, "byline": {"type": "string", "nullable": True},
            "text": {"type": "string"},
            "sections": {"type": "array", "items": {"$ref": "#/components/schemas/Section"}}}},
    }},
}
