"""Settings: one table, resolved once (defaults -> environment -> flags -> overrides), passed down, never written."""

from __future__ import annotations

import os
from dataclasses import fields

import pytest
from click.testing import CliRunner

from qa.cli import main
from qa.settings import SETTINGS, SettingError, Settings, resolve


def test_every_setting_of_the_table_is_a_field():
    assert [f.name for f in fields(Settings)] == [s.name for s in SETTINGS]


def test_defaults_then_environment_then_flags_then_overrides():
    assert resolve(environ={}).query_encoder == "exact" and resolve(environ={}).port == 8000
    environ = {"QA_QUERY_ENCODER": "int8", "QA_PORT": "9000", "QA_ANSWERABLE_THRESHOLD": "0.5", "QA_HOST": ""}
    settings = resolve(environ=environ)
    assert (settings.query_encoder, settings.port, settings.answerable_threshold) == ("int8", 9000, 0.5)
    assert settings.host == "127.0.0.1"  # an empty variable is unset
    assert resolve({"port": 9100}, environ=environ).port == 9100
    assert resolve({"port": 9100}, {"port": 9200}, environ=environ).port == 9200


@pytest.mark.parametrize("variable, value, message", [
    ("QA_PORT", "eighty", "QA_PORT='eighty' is not a valid integer"),
    ("QA_ANSWERABLE_THRESHOLD", "high", "QA_ANSWERABLE_THRESHOLD='high' is not a valid number"),
    ("QA_QUERY_ENCODER", "fp16", "QA_QUERY_ENCODER='fp16' is not one of 'exact', 'int8'"),
])
def test_a_bad_environment_value_is_named(variable, value, message):
    with pytest.raises(SettingError) as caught:
        resolve(environ={variable: value})
    assert str(caught.value) == message


def test_the_cli_says_which_variable_is_wrong(tiny_corpus, tiny_index, monkeypatch):
    monkeypatch.setenv("QA_QUERY_ENCODER", "fp16")
    result = CliRunner().invoke(main, ["search", "Nile", "--corpus", str(tiny_corpus), "--index", str(tiny_index)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr == "error: QA_QUERY_ENCODER='fp16' is not one of 'exact', 'int8'\n"


def test_serve_hands_its_workers_the_resolved_settings_not_the_environment(tiny_corpus, tiny_index, monkeypatch):
    import qa.server

    started = {}
    monkeypatch.setattr(qa.server, "run", lambda config, **kwargs: started.update(config=config, **kwargs))
    monkeypatch.setenv("QA_RATE_LIMIT", "5/minute")
    monkeypatch.setenv("QA_QUERY_ENCODER", "exact")
    environment = dict(os.environ)
    result = CliRunner().invoke(main, ["serve", "--no-build", "--query-encoder", "int8", "--onnx-threads", "3",
                                       "--port", "9001", "--corpus", str(tiny_corpus), "--index", str(tiny_index)])
    assert result.exit_code == 0, result.output
    config = started["config"]
    assert (config["QUERY_ENCODER"], config["ONNX_THREADS"], config["RATE_LIMIT"]) == ("int8", 3, "5/minute")
    assert (config["INDEX"], started["port"], started["dev"]) == (str(tiny_index), 9001, False)
    assert dict(os.environ) == environment  # nothing written to the environment


def test_the_app_passes_the_encoder_settings_to_its_index_holder(tiny_index, fake_embedder, monkeypatch):
    from qa.app import create_app
    from qa.live import index_holder

    monkeypatch.setenv("QA_ONNX_THREADS", "2")
    app = create_app({"TESTING": True, "INDEX": str(tiny_index), "EMBEDDER": fake_embedder, "QUERY_ENCODER": "int8"})
    holder = index_holder(app)
    assert (holder.encoder, holder.threads) == ("int8", 2)
