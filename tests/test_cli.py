"""The `qa` command against the real model and index: build, search (plain, JSON, stdin), info, refusals."""

import json

import pytest
from click.testing import CliRunner

from qa import __version__
from qa.cli import main

from conftest import S300

pytestmark = pytest.mark.model


@pytest.fixture
def real_runner(real_paths, monkeypatch) -> CliRunner:
    corpus, index = real_paths
    monkeypatch.setenv("QA_CORPUS", str(corpus))
    monkeypatch.setenv("QA_INDEX", str(index))
    return CliRunner()


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_search_prints_arms_sales_first(real_runner):
    result = real_runner.invoke(main, ["search", S300])
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("1. Russian-Iranian Relations: A Watchful Partnership › Arms Sales › ¶")


def test_search_json_is_the_api_shape(real_runner):
    result = real_runner.invoke(main, ["search", "--json", "--k", "3", S300])
    response = json.loads(result.stdout)
    assert [r["rank"] for r in response["results"]] == [1, 2, 3]
    assert response["results"][0]["section"] == "Arms Sales"
    assert set(response) == {"query", "answerable", "confidence", "took_ms", "results", "index"}


def test_stdin_mode_writes_one_json_object_per_line(real_runner):
    lines = [S300, "", "   ", '{"q": "Cyber attacks on Iran", "k": 2}', '{"q": 5}', "{broken", "Syria"]
    result = real_runner.invoke(main, ["search", "--json"], input="\n".join(lines) + "\n")
    assert result.exit_code == 0
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == len(lines)
    assert out[0]["results"][0]["section"] == "Arms Sales"
    assert out[1]["error"]["code"] == out[2]["error"]["code"] == "invalid_parameter"
    assert len(out[3]["results"]) == 2
    assert out[4]["error"]["code"] == "invalid_parameter"
    assert out[5]["error"]["code"] == "invalid_json"
    assert out[6]["results"]


def test_info_reports_manifest_and_freshness(real_runner):
    result = real_runner.invoke(main, ["info", "--json"])
    info = json.loads(result.stdout)
    assert info["stale"] is False and info["manifest"]["model"]["id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert info["documents"] == [{"id": "russian-iranian-relations",
                                  "title": "Russian-Iranian Relations: A Watchful Partnership", "sections": 21}]


def test_search_refuses_missing_or_stale_index(tmp_path, real_paths):
    corpus, _ = real_paths
    runner = CliRunner()
    result = runner.invoke(main, ["search", "--corpus", str(corpus), "--index", str(tmp_path / "none"), "x"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: no index yet in {tmp_path / 'none'}/; run `qa build`"]
    changed = tmp_path / "corpus"
    changed.mkdir()
    (changed / "other.txt").write_text("Other\n\nA different document.\n", encoding="utf-8")
    _, index = real_paths
    result = runner.invoke(main, ["search", "--corpus", str(changed), "--index", str(index), "x"])
    assert result.exit_code == 2 and "stale" in result.stderr and "qa build" in result.stderr


def test_build_reports_what_it_did(tiny_corpus, tmp_path):
    index = tmp_path / "built"
    runner = CliRunner()
    result = runner.invoke(main, ["build", "--corpus", str(tiny_corpus), "--index", str(index)])
    assert result.exit_code == 0, result.output
    assert "added 2, changed 0, removed 0, unchanged 0" in result.stderr
    result = runner.invoke(main, ["build", "--corpus", str(tiny_corpus), "--index", str(index)])
    assert "index is up to date" in result.stderr and result.stdout == ""
    (tiny_corpus / "rivers.txt").write_text("Rivers\n\nA new text about rivers.\n", encoding="utf-8")
    result = runner.invoke(main, ["build", "--corpus", str(tiny_corpus), "--index", str(index)])
    assert "added 0, changed 1, removed 0, unchanged 1" in result.stderr


def test_build_without_the_model_says_what_to_install(tiny_corpus, tmp_path, monkeypatch):
    """A serving-only install (no torch, no model package) with nothing to reuse: one clear line, no traceback."""
    from qa import build_encoder, embedding

    def missing(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(build_encoder, "export", missing)
    monkeypatch.setattr(embedding.SentenceTransformerEmbedder, "__init__", missing)
    result = CliRunner().invoke(main, ["build", "--corpus", str(tiny_corpus), "--index", str(tmp_path / "index")])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output  # one line
    assert "cannot build:" in result.stderr and "has no export of the model to reuse" in result.stderr
    assert "No module named 'torch'" in result.stderr and "make install" in result.stderr
    assert [p.name for p in (tmp_path / "index").iterdir()] == [".build.lock"]  # nothing but the builds' lock


def test_serve_refuses_an_unknown_query_encoder(tiny_corpus, tmp_path):
    result = CliRunner().invoke(main, ["serve", "--query-encoder", "fp16", "--corpus", str(tiny_corpus),
                                       "--index", str(tmp_path / "index")])
    assert result.exit_code == 2 and "'exact', 'int8'" in result.output


def test_the_query_encoder_option_reaches_search_and_info(real_runner, monkeypatch):
    monkeypatch.setenv("QA_QUERY_ENCODER", "exact")  # the option overrides the environment
    result = real_runner.invoke(main, ["search", "--query-encoder", "int8", "--json", "--k", "1", S300])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["section"] == "Arms Sales"
    assert "queries use exact" in real_runner.invoke(main, ["info"]).stdout  # the option did not leak
    monkeypatch.setenv("QA_QUERY_ENCODER", "int8")
    assert "queries use int8" in real_runner.invoke(main, ["info"]).stdout
    result = real_runner.invoke(main, ["search", "--query-encoder", "fp16", S300])
    assert result.exit_code == 2 and "'exact', 'int8'" in result.output
