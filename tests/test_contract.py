"""The JSON contract: each shape is declared once (qa.contract) and /api/openapi.json is generated from it.

Real responses, in-process and from a real server, must validate against the schema the served description names
for their operation and status; the description's schemas must be exactly the generated ones.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import jsonschema_rs
import pytest

from qa import contract
from qa.app import create_app
from qa.openapi import json_schemas, openapi_30, spec

# (method, path, JSON body) covering every operation and the errors a client can meet
EXCHANGES = [
    ("GET", "/api/search?q=Which+river+is+the+longest%3F&k=3", None),
    ("GET", "/api/search?q=river&k=50", None),
    ("POST", "/api/search", {"q": "river", "k": 2, "document": None}),
    ("GET", "/api/documents", None),
    ("GET", "/api/health", None),
    ("GET", "/api/openapi.json", None),
    ("GET", "/api/search?q=river&k=51", None),
    ("GET", "/api/search?q=%20", None),
    ("POST", "/api/search", {"k": 2}),
    ("POST", "/api/search", [1]),
    ("GET", "/api/documents/no-such-document", None),
]


def declared_schema(method: str, path: str, status: int) -> dict:
    """The 2020-12 schema that the served description gives for this operation's `status` response."""
    paths = spec()["paths"]
    route = path.split("?")[0]
    operation = paths.get(route) or paths["/api/documents/{id}"]
    schema = operation[method.lower()]["responses"][str(status)]["content"]["application/json"]["schema"]
    return {**schema, "components": {"schemas": json_schemas()}}


def check(method: str, path: str, status: int, body: object) -> None:
    errors = [e.message for e in jsonschema_rs.validator_for(declared_schema(method, path, status)).iter_errors(body)]
    assert not errors, f"{method} {path} -> {status}: {errors[:3]}"


def test_the_description_is_generated_from_the_declared_shapes():
    schemas = spec(["rivers"])["components"]["schemas"]
    assert {name: schemas[name] for name in json_schemas() if name != "SearchRequest"} == {
        name: schema for name, schema in openapi_30(json_schemas()).items() if name != "SearchRequest"}
    assert schemas["SearchRequest"]["properties"]["document"]["enum"] == ["rivers", None]  # the served ids


def test_the_optional_page_fields_are_declared_and_not_required():
    schemas = json_schemas()
    result, document = schemas["Result"], schemas["Document"]
    assert {"page", "page_end"} <= result["properties"].keys() and not {"page", "page_end"} & set(result["required"])
    assert "pages" in document["properties"] and "pages" not in document["required"]
    result = {"rank": 1, "score": 0.5, "document": "d", "document_title": "D", "section": "S", "chunk": 0,
              "paragraph": 1, "start": 0, "end": 4, "text": "text", "highlights": [{"start": 0, "end": 4}]}
    assert "page" not in json.loads(contract.Result.model_validate(result).to_json())  # absent until set
    assert json.loads(contract.Result.model_validate({**result, "page": 3, "page_end": 4}).to_json())["page_end"] == 4
    with pytest.raises(ValueError):
        contract.Result.model_validate({**result, "page": 0})


def test_every_error_code_has_one_status_and_is_described():
    described = json_schemas()["ErrorDetail"]["properties"]["code"]["enum"]
    assert described == list(contract.ERROR_STATUS)
    assert contract.error_code(404) == "not_found" and contract.error_code(400) == "invalid_parameter"
    assert contract.error_code(418) == "invalid_parameter" and contract.error_code(502) == "internal_error"


@pytest.mark.parametrize(("method", "path", "body"), EXCHANGES)
def test_in_process_responses_match_the_description(client, method, path, body):
    response = client.open(path, method=method, json=body)
    check(method, path, response.status_code, response.get_json())


def test_each_document_and_an_unavailable_index_match_the_description(client, tmp_path, fake_embedder):
    for doc in client.get("/api/documents").get_json()["documents"]:
        path = f"/api/documents/{doc['id']}"
        response = client.get(path)
        check("GET", path, response.status_code, response.get_json())
    empty = create_app({"TESTING": True, "INDEX": str(tmp_path / "empty"), "EMBEDDER": fake_embedder}).test_client()
    for path in ("/api/health", "/api/search?q=river", "/api/documents"):
        response = empty.get(path)
        assert response.status_code == 503
        check("GET", path, 503, response.get_json())


@pytest.mark.server
@pytest.mark.model
@pytest.mark.parametrize(("method", "path", "body"), EXCHANGES)
def test_real_server_responses_match_the_description(live_server, method, path, body):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(live_server + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    check(method, path, status, json.loads(raw))
