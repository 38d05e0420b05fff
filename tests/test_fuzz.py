"""Fuzzing the API: Hypothesis properties of the query pipeline, and schemathesis against /api/openapi.json.

The fake embedder keeps every example fast and deterministic; the properties concern validation, the response
schema and the ranking's invariants, which do not depend on the model.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events

from qa.app import MAX_BODY_BYTES
from qa.contract import WHITESPACE
from qa.openapi import json_schemas
from qa.search import MAX_K, QueryError, validate

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SCHEMATHESIS_EXAMPLES = 100  # per operation and phase: about 1,000 requests, under ten seconds

TRICKY = ["\ud800", "\udfff", "\x00", "\x1c", "\u202e", "\u0301", " ", "\u3000", "\ufeff", "🌊", "ナ", "ن", "%", "&"]
characters = st.one_of(st.characters(), st.sampled_from(TRICKY))  # st.characters() leaves out lone surrogates
questions = st.one_of(st.text(characters, max_size=40), st.text(characters, min_size=995, max_size=1005),
                      st.sampled_from(["Nile", "Which river is the longest?", "glaciers valleys", " Nile "]))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 60), st.integers(), questions,
                         st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(characters, max_size=5), inner, max_size=3), max_leaves=6)
documents = st.one_of(st.none(), st.sampled_from(["rivers", "mountains", "", "nope", "rivers.txt"]), questions)


def schema_validator(name: str):
    """The shape's JSON Schema as generated from its declaration (the served spec is its OpenAPI 3.0 rendering)."""
    schemas = {"components": {"schemas": json_schemas()}}
    return jsonschema_rs.validator_for({"$ref": f"#/components/schemas/{name}", **schemas})


SEARCH_RESPONSE, ERROR = schema_validator("SearchResponse"), schema_validator("Error")


def has_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(has_surrogate(k) or has_surrogate(v) for k, v in value.items())
    return isinstance(value, list) and any(has_surrogate(v) for v in value)


def served(app):
    return app.extensions["qa.index"].searcher


def accepted(q: object, k: object, document: object, app) -> bool:
    """The oracle: what `validate` says of these parameters."""
    try:
        validate(q, k, document, served(app).index.documents)
    except QueryError:
        return False
    return True


def check_answer(body: dict, q: str, k: int, document: str | None, app) -> None:
    """A 200: valid against the spec, ranked 1..n best first, and every offset slices its document's text."""
    SEARCH_RESPONSE.validate(body)
    index = served(app).index
    first, last = index.document_ranges[document] if document else (0, len(index.chunks))
    results = body["results"]
    assert body["query"] == q.strip()
    assert [r["rank"] for r in results] == list(range(1, min(k, last - first) + 1))
    assert all(a["score"] >= b["score"] for a, b in zip(results, results[1:]))
    for r in results:
        assert document in (None, r["document"])
        assert index.documents[r["document"]].text[r["start"]:r["end"]] == r["text"]
        assert all(r["start"] <= h["start"] < h["end"] <= r["end"] for h in r["highlights"])


def check_error(response, codes: set[str]) -> None:
    assert response.status_code == 400, response.get_data(as_text=True)
    ERROR.validate(response.get_json())
    assert response.get_json()["error"]["code"] in codes


def test_the_spec_names_exactly_the_whitespace_that_strip_removes():
    assert set(WHITESPACE) == {chr(c) for c in range(0x110000) if chr(c).isspace()}


@FUZZ
@given(q=questions, k=st.one_of(st.none(), st.integers(-5, 60).map(str), st.text(characters, max_size=4)),
       document=documents)
def test_any_query_string_is_answered_or_refused_clearly(client, app, q, k, document):
    """Sent as bytes a browser could send, lone surrogates included (encoded as UTF-8 would, if it could)."""
    params = {"q": q, "k": k, "document": document}
    query = "&".join(f"{name}={quote(value.encode('utf-8', 'surrogatepass'), safe='')}"
                     for name, value in params.items() if value is not None)
    response = client.get("/api/search?" + query)
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    if response.status_code == 400:
        check_error(response, {"invalid_parameter"})
        return
    body = response.get_json()
    check_answer(body, body["query"], int(k) if k else 5, document or None, app)
    if not has_surrogate(q):
        assert accepted(q, int(k) if k else 5, document or None, app)


@FUZZ
@given(body=st.one_of(st.fixed_dictionaries({}, optional={"q": questions | json_values, "k": json_values,
                                                          "document": documents | json_values,
                                                          "other": json_values}),
                      json_values))
def test_any_json_body_is_answered_or_refused_clearly(client, app, body):
    data = json.dumps(body)
    response = client.post("/api/search", data=data, content_type="application/json")
    if len(data) > MAX_BODY_BYTES:
        assert response.status_code == 413
    elif has_surrogate(body) or not isinstance(body, dict):
        check_error(response, {"invalid_json"})
    elif not accepted(body.get("q"), body.get("k", 5), body.get("document"), app):
        check_error(response, {"invalid_parameter"})
    else:
        assert response.status_code == 200, response.get_data(as_text=True)
        check_answer(response.get_json(), body["q"], body.get("k", 5), body.get("document"), app)


@FUZZ
@given(q=questions.filter(lambda q: not has_surrogate(q)), k=st.integers(1, MAX_K))
def test_the_same_question_gets_the_same_answer(client, q, k):
    answers = [client.get("/api/search", query_string={"q": q, "k": k}) for _ in range(2)]
    assert answers[0].status_code == answers[1].status_code
    if answers[0].status_code == 200:
        assert answers[0].get_json()["results"] == answers[1].get_json()["results"]


# ---------------------------------------------------------------- schemathesis


SCHEMATHESIS = SchemathesisConfig.from_dict({"seed": 6, "generation": {"max-examples": SCHEMATHESIS_EXAMPLES}})


def run_schemathesis(schema) -> tuple[int, list[str]]:
    """Every phase schemathesis' CLI runs (examples, coverage, fuzzing, stateful), bounded; (cases, failures)."""
    cases, failures = 0, []
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
            failures += [f"{event.recorder.label}: {check.name}: {check.failure_info.failure}"
                         for checks in event.recorder.checks.values() for check in checks if check.failure_info]
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            failures.append(f"schemathesis error: {event}")
    return cases, failures


def test_schemathesis_finds_nothing_against_our_own_spec(app, record_property):
    cases, failures = run_schemathesis(schemathesis.openapi.from_wsgi("/api/openapi.json", app, config=SCHEMATHESIS))
    record_property("schemathesis_cases", cases)
    print(f"schemathesis: {cases} cases, {len(failures)} failures")
    assert cases > 500 and not failures, "\n\n".join(failures[:5])


@pytest.mark.server
@pytest.mark.model
def test_schemathesis_finds_nothing_against_the_real_server(live_server, record_property):
    """The same run over HTTP against `qa serve` (gunicorn) with the real model and index."""
    schema = schemathesis.openapi.from_url(live_server + "/api/openapi.json", config=SCHEMATHESIS)
    cases, failures = run_schemathesis(schema)
    record_property("schemathesis_cases", cases)
    print(f"schemathesis over HTTP: {cases} cases, {len(failures)} failures")
    assert cases > 500 and not failures, "\n\n".join(failures[:5])
