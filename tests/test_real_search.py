"""The whole path with real parts: the real model, a real FAISS index, the Flask app and a running `qa serve`."""

import json
import urllib.parse
import urllib.request

import pytest

from conftest import S300

pytestmark = pytest.mark.model


def test_s300_question_finds_arms_sales_in_process(real_searcher):
    response = real_searcher.search(S300)
    top = response["results"][0]
    assert top["section"] == "Arms Sales" and response["answerable"] is True
    text = real_searcher.index.documents[top["document"]].text
    assert text[top["start"]:top["end"]] == top["text"]
    mark = top["highlights"][0]
    assert top["start"] <= mark["start"] < mark["end"] <= top["end"]
    sentence = text[mark["start"]:mark["end"]]
    assert sentence[0].isupper() and sentence.endswith((".", ".”", "?", "!"))  # whole sentences are marked


def test_s300_question_through_the_flask_app(real_app):
    client = real_app.test_client()
    response = client.get("/api/search", query_string={"q": S300, "k": 3})
    assert response.status_code == 200
    assert response.json["results"][0]["section"] == "Arms Sales"
    posted = client.post("/api/search", json={"q": S300, "k": 3})
    assert [r["chunk"] for r in posted.json["results"]] == [r["chunk"] for r in response.json["results"]]
    page = client.get("/", query_string={"q": S300})
    assert page.status_code == 200 and b"Arms Sales" in page.data and b"<mark>" in page.data


def test_s300_question_over_http_to_qa_serve(live_server):
    url = f"{live_server}/api/search?" + urllib.parse.urlencode({"q": S300})
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.load(response)
    assert body["results"][0]["section"] == "Arms Sales"
    assert body["results"][0]["document_title"] == "Russian-Iranian Relations: A Watchful Partnership"


@pytest.mark.parametrize("path,status", [("/api/search?q=", 400), ("/api/search?q=x&k=0", 400),
                                         ("/api/search?q=x&k=51", 400), ("/api/search?q=x&k=abc", 400),
                                         ("/api/search?q=%20%20", 400)])
def test_bad_input_over_http_is_a_json_400(live_server, path, status):
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(live_server + path, timeout=30)
    assert caught.value.code == status
    assert json.load(caught.value)["error"]["code"] == "invalid_parameter"


def test_non_json_body_over_http_is_a_json_400(live_server):
    request = urllib.request.Request(live_server + "/api/search", data=b"{not json", method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 400 and json.load(caught.value)["error"]["code"] == "invalid_json"
