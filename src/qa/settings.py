"""The one table of settings: it drives the CLI options, the Flask config and the README's configuration table.

Each setting has a command-line option, an environment variable and a default. The precedence is
option > environment > default, for the CLI and the web app alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Setting:
    name: str  # Flask config key is name.upper(); CLI option is --name-with-dashes
    env: str
    default: Any
    type: Callable[[str], Any]
    help: str

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def from_env(self) -> Any:
        raw = os.environ.get(self.env)
        return self.default if raw in (None, "") else self.type(raw)


SETTINGS: tuple[Setting, ...] = (
    Setting("corpus", "QA_CORPUS", "corpus", str, "Folder of documents (.txt, .md), searched recursively."),
    Setting("index", "QA_INDEX", "index", str, "Folder holding the built index."),
    Setting("host", "QA_HOST", "127.0.0.1", str, "Address `qa serve` listens on."),
    Setting("port", "QA_PORT", 8000, int, "Port `qa serve` listens on."),
    Setting("workers", "QA_WORKERS", os.cpu_count() or 1, int, "Server worker processes (default: one per core)."),
    Setting("onnx_threads", "QA_ONNX_THREADS", 1, int,
            "onnxruntime threads per process for the query encoder (one per worker is fastest under load)."),
    Setting("query_encoder", "QA_QUERY_ENCODER", "exact", str,
            "`exact`: the model's own weights, the vectors of sentence-transformers. `int8`: its weights quantised "
            "to 8 bits, about 2.5x faster per question, rankings nearly the same (see docs/benchmark.md)."),
    Setting("answerable_threshold", "QA_ANSWERABLE_THRESHOLD", None, float,
            "Answer only when `confidence` (the calibrated probability that the documents answer, 0-1) reaches "
            "this (default: the calibration's threshold, 0.65 as shipped; `qa tune` refits it, see docs/retrieval.md)."),
    Setting("rate_limit", "QA_RATE_LIMIT", None, str,
            "Per-client request limit for the API, e.g. `120/minute` (in-memory, so per worker). Off by default."),
    Setting("cors_origins", "QA_CORS_ORIGINS", "", str,
            "Comma-separated origins allowed to call the JSON API from a browser. None by default."),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def defaults_from_env() -> dict[str, Any]:
    """Every setting resolved from the environment or its default, keyed by Flask config name."""
    return {s.name.upper(): s.from_env() for s in SETTINGS}


def markdown_table() -> str:
    """The configuration table printed in the README (`qa settings --markdown`)."""
    rows = ["| option | environment | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = {"workers": "cores"}.get(s.name) or ("–" if s.default in (None, "") else f"`{s.default}`")
        rows.append(f"| `{s.option}` | `{s.env}` | {default} | {s.help} |")
    return "\n".join(rows)
