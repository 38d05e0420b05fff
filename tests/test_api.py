"""The JSON API's contract: answers, and every error with its status, its stable code and the one error shape."""

from __future__ import annotations

import io
import json
import logging

import pytest

from qa.app import create_app
from qa.index import live_build
from qa.search import Searcher

RETRYABLE = {429, 503}


def assert_error(response, status: int, code: str) -> dict:
    """The one error shape, with this status and code; Retry-After on the statuses a client should retry."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code and body["error"]["message"]
    assert ("Retry-After" in response.headers) == (status in RETRYABLE)
    return body


def post_json(client, body, content_type: str = "application/json"):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/api/search", data=data, content_type=content_type)


# ---------------------------------------------------------------- answers


def test_get_and_post_give_the_same_answer(client):
    got = client.get("/api/search?q=Which river is the longest in Africa?&k=3").get_json()
    posted = post_json(client, {"q": "Which river is the longest in Africa?", "k": 3}).get_json()
    assert [r["rank"] for r in got["results"]] == [1, 2, 3]
    assert got["results"] == posted["results"]
    assert got["results"][0]["section"] == "The Nile"


@pytest.mark.parametrize("extra", ["&unknown=1", "&K=99", "&q2=x", "&document="])
def test_unknown_and_empty_optional_query_parameters_are_ignored(client, extra):
    assert client.get("/api/search?q=Nile" + extra).status_code == 200


def test_unknown_json_fields_are_ignored_and_document_null_means_all(client):
    response = post_json(client, {"q": "Nile", "unknown": [1, {"x": None}], "document": None})
    assert response.status_code == 200


def test_document_restricts_the_search(client):
    results = client.get("/api/search?q=water&k=50&document=mountains").get_json()["results"]
    assert results and {r["document"] for r in results} == {"mountains"}


def test_charset_parameter_of_json_is_accepted(client):
    assert post_json(client, {"q": "Nile"}, "application/json; charset=utf-8").status_code == 200


# ---------------------------------------------------------------- 400 invalid_parameter

BAD_QUERY_STRINGS = [
    "", "q=", "q=%20%20", "q=%09%0A%0D", "q=%E3%80%80", "q=%C2%85%1C",  # missing, empty, only (Unicode) whitespace
    "q=" + "a" * 1001, "q=%20" + "a" * 1000,  # over 1,000 characters, counted as sent
    "q=Nile&k=0", "q=Nile&k=51", "q=Nile&k=-1", "q=Nile&k=1000000000",  # outside 1..50
    "q=Nile&k=", "q=Nile&k=abc", "q=Nile&k=5.0", "q=Nile&k=1e1", "q=Nile&k=%205", "q=Nile&k=5%0A",  # not digits
    "q=Nile&k=%2B5", "q=Nile&k=5_0", "q=Nile&k=%D9%A5", "q=Nile&k=%EF%BC%95", "q=Nile&k=0x5", "q=Nile&k=true",
    "q=Nile&document=nope", "q=Nile&document=rivers.txt", "q=Nile&document=..%2Frivers",  # no such document
]


@pytest.mark.parametrize("query", BAD_QUERY_STRINGS)
def test_bad_query_string_is_400(client, query):
    assert_error(client.get("/api/search?" + query), 400, "invalid_parameter")


BAD_BODIES = [
    {}, {"k": 5}, {"q": ""}, {"q": " \t\n"}, {"q": "\u3000\u2028"}, {"q": "a" * 1001},
    {"q": 5}, {"q": None}, {"q": ["Nile"]}, {"q": {"text": "Nile"}}, {"q": True},
    {"q": "Nile", "k": "5"}, {"q": "Nile", "k": 5.5}, {"q": "Nile", "k": 5.0}, {"q": "Nile", "k": True},
    {"q": "Nile", "k": None}, {"q": "Nile", "k": 0}, {"q": "Nile", "k": 51}, {"q": "Nile", "k": 10 ** 40},
    {"q": "Nile", "k": [5]}, {"q": "Nile", "document": ""}, {"q": "Nile", "document": "nope"},
    {"q": "Nile", "document": 5}, {"q": "Nile", "document": ["rivers"]},
    '{"q": "Nile", "k": NaN}', '{"q": "Nile", "k": Infinity}',
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=repr)
def test_bad_json_parameter_is_400(client, body):
    assert_error(post_json(client, body), 400, "invalid_parameter")


MALFORMED = [
    "", "{", '{"q": "Nile",', "{'q': 'Nile'}", "null", "[]", '"Nile"', "5", '["q", "Nile"]',
    '{"q": "\\ud800"}', '{"q": "Nile \\udfff"}', '{"q": "Nile", "x": "\\udbff"}', '{"\\ud800": 1, "q": "Nile"}',
    b'{"q": "\xff\xfe"}', b'{"q": "\xed\xa0\x80"}', b"\x00\x01",  # not UTF-8; an encoded surrogate
    "[" * 5000 + "]" * 5000, '{"a":' * 2000 + "1" + "}" * 2000,  # nested too deep for the parser
]


@pytest.mark.parametrize("body", MALFORMED, ids=lambda b: repr(b)[:40])
def test_malformed_json_is_400_invalid_json(client, body):
    assert_error(post_json(client, body), 400, "invalid_json")


# ---------------------------------------------------------------- 413, 415, 404, 405


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "", "application/jsonx", "text/json"])
def test_post_without_json_content_type_is_415(client, content_type):
    assert_error(post_json(client, {"q": "Nile"}, content_type), 415, "unsupported_media_type")


def test_body_over_16_kb_is_413(client):
    assert_error(post_json(client, {"q": "Nile", "pad": "x" * 17_000}), 413, "payload_too_large")


def test_chunked_body_over_16_kb_is_413(client):
    """No Content-Length to refuse up front (as gunicorn passes a chunked body): the limit holds while reading."""
    body = io.BytesIO(b'{"q": "Nile", "pad": "' + b"x" * 20_000 + b'"}')
    response = client.post("/api/search", input_stream=body, content_type="application/json",
                           environ_overrides={"wsgi.input_terminated": True})
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("path", ["/api/nope", "/api/", "/api", "/api/documents/nope", "/api/documents/rivers.txt",
                                  "/api/search/", "/api/documents/rivers/extra"])
def test_unknown_api_paths_are_json_404(client, path):
    assert_error(client.get(path), 404, "not_found")


@pytest.mark.parametrize("method,path", [("delete", "/api/search"), ("put", "/api/search"),
                                         ("patch", "/api/search"), ("post", "/api/documents"),
                                         ("post", "/api/health"), ("delete", "/api/documents/rivers")])
def test_wrong_method_is_json_405_with_allow(client, method, path):
    response = getattr(client, method)(path)
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_html_pages_get_html_errors(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404 and response.mimetype == "text/html"


# ---------------------------------------------------------------- 503 without an index


@pytest.fixture
def no_index_client(tmp_path, fake_embedder):
    return create_app({"TESTING": True, "INDEX": str(tmp_path / "empty"), "EMBEDDER": fake_embedder}).test_client()


@pytest.mark.parametrize("path", ["/api/search?q=Nile", "/api/documents", "/api/documents/rivers"])
def test_no_index_is_503_with_retry_after(no_index_client, path):
    body = assert_error(no_index_client.get(path), 503, "index_unavailable")
    assert "qa build" in body["error"]["message"]


def test_no_index_health_is_503_and_pages_say_so(no_index_client):
    health = assert_error(no_index_client.get("/api/health"), 503, "index_unavailable")
    assert health["status"] == "unavailable"
    page = no_index_client.get("/")
    assert page.status_code == 503 and page.mimetype == "text/html"


def test_the_spec_is_served_without_an_index(no_index_client):
    assert no_index_client.get("/api/openapi.json").get_json()["paths"]["/api/search"]


# ---------------------------------------------------------------- no 500 shows anything


@pytest.fixture
def broken_search(monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("secret detail /etc/shadow")

    monkeypatch.setattr(Searcher, "search", explode)


def test_unexpected_exception_is_a_generic_500_with_a_logged_request_id(client, broken_search, caplog):
    caplog.set_level(logging.ERROR)
    response = client.get("/api/search?q=Nile", headers={"X-Request-Id": "req-42"})
    body = assert_error(response, 500, "internal_error")
    assert "req-42" in body["error"]["message"] and response.headers["X-Request-Id"] == "req-42"
    assert "secret" not in response.get_data(as_text=True) and "Traceback" not in response.get_data(as_text=True)
    logged = [r for r in caplog.records if "req-42" in r.getMessage()]
    assert logged and logged[0].exc_info and "secret detail" in str(logged[0].exc_info[1])


def test_unexpected_exception_on_a_page_is_a_friendly_500(client, broken_search):
    response = client.get("/?q=Nile")
    assert response.status_code == 500 and response.mimetype == "text/html"
    assert "secret" not in response.get_data(as_text=True)


# ---------------------------------------------------------------- Unicode

UNICODE_QUESTIONS = [
    "ナイル川はどこですか", "نهر النيل في أفريقيا", "נהר הנילוס", "Нил — самая длинная река", "नील नदी",
    "🌊🏞️ river 🐊", "👩🏽‍🔬", "Nile\u0301\u0301\u0301\u0301", "e\u0308\u0324" * 50, "\u202eelin eht\u202c",
    "Nile\x00river", "\x00", "\x01\x02\x1b[31mred", "\u200b\u200d", "\ufeff", "Ｎｉｌｅ", "ﬁsh", "\U0010ffff",
    "Ǹ" * 1000, "\x7f\x80\x9f",
]


@pytest.mark.parametrize("question", UNICODE_QUESTIONS, ids=lambda q: repr(q)[:30])
def test_any_script_or_character_gets_a_clear_answer(client, question):
    for response in (client.get("/api/search", query_string={"q": question}), post_json(client, {"q": question})):
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert body["query"] == question.strip() and len(body["results"]) == 5


@pytest.mark.parametrize("raw", ["%ED%A0%80", "%FF%FE", "%C0%AF", "Nile%80", "%", "%%", "%zz", "%00"])
def test_undecodable_bytes_in_the_query_string_get_an_answer(client, raw):
    response = client.get("/api/search?q=" + raw)
    assert response.status_code == 200 and response.get_json()["query"]


def test_health_names_the_build_and_the_query_encoder(client, tiny_index):
    body = client.get("/api/health").get_json()
    assert body["status"] == "ok" and body["query_encoder"] == "fake"
    assert body["index"]["build"] == live_build(tiny_index).name
