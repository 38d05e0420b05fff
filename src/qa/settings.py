"""The one table of settings: it drives the CLI options, the Flask config and the README's configuration table.

Each setting has a command-line option, an environment variable and a default. `resolve` turns them into one
frozen `Settings` (defaults -> environment -> command-line flags -> overrides, the last winning), for the CLI and
the web app alike; the library takes the values it needs as arguments. `resolve` is the one place the project
reads the process environment, and nothing writes it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from .onnx_embedding import QUERY_ENCODERS

BACKENDS = ("faiss", "postgres")


class SettingError(ValueError):
    """A setting's value that cannot be used; the message names the environment variable and what it accepts."""


@dataclass(frozen=True)
class Setting:
    name: str  # Flask config key is name.upper(); CLI option is --name-with-dashes
    env: str
    default: Any
    type: Callable[[str], Any]
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: str) -> Any:
        """The environment's text as this setting's value; SettingError if it is not one."""
        try:
            value = self.type(raw)
        except ValueError:
            kind = "integer" if self.type is int else "number" if self.type is float else "value"
            raise SettingError(f"{self.env}={raw!r} is not a valid {kind}") from None
        if self.choices is not None and value not in self.choices:
            raise SettingError(f"{self.env}={raw!r} is not one of {', '.join(map(repr, self.choices))}")
        return value


SETTINGS: tuple[Setting, ...] = (
    Setting("corpus", "QA_CORPUS", "corpus", str, "Folder of documents (.txt, .md), searched recursively."),
    Setting("index", "QA_INDEX", "index", str, "Folder holding the built index."),
    Setting("host", "QA_HOST", "127.0.0.1", str, "Address `qa serve` listens on."),
    Setting("port", "QA_PORT", 8000, int, "Port `qa serve` listens on."),
    Setting("workers", "QA_WORKERS", os.cpu_count() or 1, int, "Server worker processes (default: one per core)."),
    Setting(
        "onnx_threads",
        "QA_ONNX_THREADS",
        1,
        int,
        "onnxruntime threads per process for the query encoder (one per worker is fastest under load).",
    ),
    Setting(
        "query_encoder",
        "QA_QUERY_ENCODER",
        "exact",
        str,
        "`exact`: the model's own weights, the vectors of sentence-transformers. `int8`: its weights quantised "
        "to 8 bits, about 2.5x faster per question, rankings nearly the same (see docs/benchmark.md).",
        QUERY_ENCODERS,
    ),
    Setting(
        "answerable_threshold",
        "QA_ANSWERABLE_THRESHOLD",
        None,
        float,
        "Answer only when `confidence` (the calibrated probability that the documents answer, 0-1) reaches "
        "this (default: the calibration's threshold, 0.50 as shipped; `qa tune` refits it, "
        "see docs/retrieval.md).",
    ),
    Setting(
        "rate_limit",
        "QA_RATE_LIMIT",
        None,
        str,
        "Per-client request limit for the API, e.g. `120/minute` (in-memory, so per worker). Off by default.",
    ),
    Setting(
        "cors_origins",
        "QA_CORS_ORIGINS",
        "",
        str,
        "Comma-separated origins allowed to call the JSON API from a browser. None by default.",
    ),
    Setting(
        "backend",
        "QA_BACKEND",
        "faiss",
        str,
        "Where the index is searched: `faiss` (files in the index folder) or `postgres` (PostgreSQL with "
        "pgvector, see `database_url`).",
        BACKENDS,
    ),
    Setting(
        "database_url",
        "QA_DATABASE_URL",
        "",
        str,
        "PostgreSQL URL for `backend = postgres`, e.g. `postgresql://qa:secret@db/qa`. Empty: an embedded "
        "server started in `<index>/postgres` and stopped on exit.",
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Every setting's resolved value (see `SETTINGS` for what each means)."""

    corpus: str
    index: str
    host: str
    port: int
    workers: int
    onnx_threads: int
    query_encoder: str
    answerable_threshold: float | None
    rate_limit: str | None
    cors_origins: str
    backend: str
    database_url: str

    def flask_config(self) -> dict[str, Any]:
        """The values keyed by Flask config name (the setting's name in capitals)."""
        return {name.upper(): value for name, value in asdict(self).items()}


def resolve(
    flags: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults, then the environment (`environ`, else the process's), then command-line `flags`, then `overrides`.

    `flags` hold only the options given on the command line (already checked by click); `overrides` are for tests.
    Raises SettingError for an environment value of the wrong type or outside the setting's choices.
    """
    env = os.environ if environ is None else environ
    values = {s.name: s.default if env.get(s.env) in (None, "") else s.parse(env[s.env]) for s in SETTINGS}
    values.update(flags or {})
    values.update(overrides or {})
    return Settings(**values)


def markdown_table() -> str:
    """The configuration table printed in the README (`qa settings --markdown`)."""
    rows = ["| option | environment | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = {"workers": "cores"}.get(s.name) or ("–" if s.default in (None, "") else f"`{s.default}`")
        rows.append(f"| `{s.option}` | `{s.env}` | {default} | {s.help} |")
    return "\n".join(rows)
