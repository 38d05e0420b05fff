"""Small things a new user meets: the same words for the same mistake, limits named, `-k`, the start-up line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from conftest import FakeEmbedder
from qa.app import MAX_BODY_BYTES
from qa.cli import main


def test_a_missing_q_reads_the_same_over_get_and_post(client):
    """GET used to say "q must not be empty" where POST said "q is required"."""
    get, post = client.get("/api/search?k=3"), client.post("/api/search", json={"k": 3})
    assert get.status_code == post.status_code == 400
    assert get.get_json() == post.get_json() == {"error": {"code": "invalid_parameter", "message": "q is required"}}
    assert client.get("/api/search?q=").get_json() == client.post("/api/search", json={"q": ""}).get_json()


def test_the_413_names_the_body_limit(client):
    response = client.post("/api/search", json={"q": "Nile", "pad": "x" * MAX_BODY_BYTES})
    assert response.status_code == 413
    assert response.get_json()["error"]["message"] == f"the request body is over the limit of {MAX_BODY_BYTES:,} bytes"


def test_qa_search_takes_k_as_a_short_option(runner, monkeypatch):
    monkeypatch.setattr("qa.engine.MODEL_ID", FakeEmbedder.model_id)  # the tiny index is the fake model's
    monkeypatch.setattr("qa.engine.installed_model_version", lambda index: FakeEmbedder.model_version)
    monkeypatch.setattr("qa.engine.load_embedder", lambda index, *settings: FakeEmbedder())
    short = runner.invoke(main, ["search", "--json", "-k", "2", "Which river is the longest?"])
    assert short.exit_code == 0, short.output
    assert len(json.loads(short.stdout)["results"]) == 2
    long = runner.invoke(main, ["search", "--json", "--k", "2", "Which river is the longest?"])
    assert json.loads(long.stdout)["results"] == json.loads(short.stdout)["results"]
    assert "-k, --k" in runner.invoke(main, ["search", "--help"]).output


def test_qa_serve_says_plainly_that_it_builds_first(tmp_path, tiny_corpus, monkeypatch):
    """It used to say "no index in index; run `qa build`: building now"."""
    built, served = [], []
    monkeypatch.setattr("qa.cli.run_build", lambda corpus, index, database_url=None: built.append(index))
    monkeypatch.setattr("qa.server.run", lambda *args, **kwargs: served.append(args))
    index = tmp_path / "index"
    result = CliRunner().invoke(main, ["serve", "--corpus", str(tiny_corpus), "--index", str(index)])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"no index yet in {index}/: building it now"]
    assert built == [str(index)] and served


def test_plain_search_output_says_what_was_searched_after_a_correction(runner, monkeypatch):
    monkeypatch.setattr("qa.engine.MODEL_ID", FakeEmbedder.model_id)  # the tiny index is the fake model's
    monkeypatch.setattr("qa.engine.installed_model_version", lambda index: FakeEmbedder.model_version)
    monkeypatch.setattr("qa.engine.load_embedder", lambda index, *settings: FakeEmbedder())
    result = runner.invoke(main, ["search", "-k", "1", "how much water does the amazn carry"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Showing results for: how much water does the amazon carry\n")
    clean = runner.invoke(main, ["search", "-k", "1", "how much water does the amazon carry"])
    assert "Showing results for" not in clean.stdout
