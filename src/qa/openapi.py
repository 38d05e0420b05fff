"""The OpenAPI 3.0 description of the JSON API, served at /api/openapi.json.

Its schemas are generated from the shapes declared in `qa.contract`, the same models the API builds its responses
with; this module adds the operations: which path takes what and answers with which status. It is checked against
the running app by schemathesis (tests/test_fuzz.py): every status a client can meet is listed with its body and
headers, and `document` lists the ids of the index being served.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from pydantic.json_schema import JsonSchemaMode, models_json_schema

from . import __version__
from .contract import ERROR_STATUS, SHAPES, SearchRequest, Shape
from .limits import MAX_BODY_BYTES, MAX_REQUEST_LINE

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


@cache
def json_schemas() -> dict[str, Any]:
    """The JSON Schema (2020-12) of every shape in `qa.contract`, as responses carry them (requests as sent)."""
    modes: list[tuple[type[Shape], JsonSchemaMode]] = [
        (shape, "validation" if shape is SearchRequest else "serialization") for shape in SHAPES
    ]
    _, schemas = models_json_schema(modes, ref_template="#/components/schemas/{model}")
    return schemas["$defs"]


def openapi_30(node: Any) -> Any:
    """A JSON Schema in OpenAPI 3.0's dialect: `nullable` for a union with null, `enum` for `const`.

    3.0 rather than 3.1 because its `integer` excludes 2.0, as the API does (JSON Schema 2020-12 counts 2.0 an
    integer, and schema-driven clients would send it).
    """
    if isinstance(node, list):
        return [openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: openapi_30(value) for key, value in node.items()}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    options = node.get("anyOf", [])
    if {"type": "null"} in options and len(options) == 2:
        del node["anyOf"]
        node = {**next(o for o in options if o != {"type": "null"}), **node, "nullable": True}
    return node


@cache
def _schemas() -> dict[str, Any]:
    return openapi_30(json_schemas())


def _json(schema: dict, description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    return {**response, "headers": headers} if headers else response


def _error(description: str, headers: dict | None = None) -> dict:
    return _json(_ref("Error"), description, headers)


def _one_of(ids: list[str] | None, *extra: str | None) -> dict:
    """An enum of the served documents' ids (and `extra` values); no constraint when no index is loaded."""
    return {} if ids is None else {"enum": [*ids, *extra]}


_UNAVAILABLE = _error("No index is loaded (`Retry-After` says when to try again).", _RETRY_AFTER)
_LIMITED = _error("Too many requests from this address (only when the server runs with a rate limit).", _RETRY_AFTER)
_RESULTS = _json(_ref("SearchResponse"), "Ranked passages")
_ERRORS = ", ".join(f"`{code}` ({status})" for code, status in ERROR_STATUS.items())

_INFO = {
    "title": "qa: question answering over documents",
    "version": __version__,
    "description": "Ranked, cited passages of the documents' own text. Offsets are character offsets into "
    "the document text that /api/documents/{id} returns. Every error has the body "
    '`{"error": {"code", "message"}}`: an unknown path under /api/ is a 404 and an '
    "unsupported method a 405 (with `Allow`), both in that shape. Unknown parameters are "
    f"ignored. Error codes and their status: {_ERRORS}.",
}


def _search(document_ids: list[str] | None) -> tuple[dict, dict]:
    """The /api/search operations, and the request's schema with the served document ids."""
    request = copy.deepcopy(_schemas()["SearchRequest"])
    fields = request["properties"]
    fields["document"] |= _one_of(document_ids, None)  # null is allowed: it is nullable
    query_parameters = [
        {"name": "q", "in": "query", "required": True, "schema": fields["q"]},
        {"name": "k", "in": "query", "required": False, "schema": fields["k"]},
        {
            "name": "document",
            "in": "query",
            "required": False,
            "description": fields["document"]["description"],
            "schema": {"type": "string", **_one_of(document_ids, "")},
        },
    ]
    operations = {
        "get": {
            "summary": "Passages that answer a question, best first",
            "description": f"The server takes a request line of at most {MAX_REQUEST_LINE} bytes: POST a long "
            "question in a non-Latin script.",
            "parameters": query_parameters,
            "responses": {"200": _RESULTS, "400": _error("Invalid parameter."), "429": _LIMITED, "503": _UNAVAILABLE},
        },
        "post": {
            "summary": "The same search with a JSON body",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("SearchRequest")}}},
            "responses": {
                "200": _RESULTS,
                "400": _error("Invalid parameter, or malformed JSON (lone surrogates included)."),
                "413": _error(f"Body over {MAX_BODY_BYTES // 1024} kB."),
                "415": _error("Content-Type is not application/json."),
                "429": _LIMITED,
                "503": _UNAVAILABLE,
            },
        },
    }
    return operations, request


def _documents(document_ids: list[str] | None) -> dict:
    listing = {
        "get": {
            "summary": "The documents of the index and their sections",
            "responses": {"200": _json(_ref("DocumentList"), "Documents"), "429": _LIMITED, "503": _UNAVAILABLE},
        }
    }
    one = {
        "get": {
            "summary": "One document of the index: title, full text and sections with offsets",
            "parameters": [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "description": "A document id, not a path.",
                    "schema": {"type": "string", **_one_of(document_ids)},
                }
            ],
            "responses": {
                "200": _json(_ref("Document"), "The document"),
                "404": _error("No such document in the index."),
                "429": _LIMITED,
                "503": _UNAVAILABLE,
            },
        }
    }
    return {"/api/documents": listing, "/api/documents/{id}": one}


_HEALTH = {
    "get": {
        "summary": "Whether an index is loaded, and which",
        "responses": {
            "200": _json(_ref("Health"), "Serving"),
            "503": _json(_ref("Unavailable"), "No index loaded", _RETRY_AFTER),
        },
    }
}

_OPENAPI = {"get": {"summary": "This description", "responses": {"200": _json({"type": "object"}, "OpenAPI document")}}}


def spec(document_ids: list[str] | None = None) -> dict:
    """The description, with the served index's document ids when there is one."""
    search, request = _search(document_ids)
    return {
        "openapi": "3.0.3",
        "info": _INFO,
        "paths": {
            "/api/search": search,
            **_documents(document_ids),
            "/api/health": _HEALTH,
            "/api/openapi.json": _OPENAPI,
        },
        "components": {"schemas": {**_schemas(), "SearchRequest": request}},
    }
