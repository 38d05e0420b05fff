"""Fixtures in the style of Flask's tutorial: `app`, `client`, `runner`, plus corpora, indexes and a live server.

Unit tests use `FakeEmbedder` (hashed bag of stems: fast, deterministic, no model). Tests marked `model` use the
real all-MiniLM-L6-v2 and a real FAISS index built once per session from the bundled corpus.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qa.app import create_app
from qa.index import build
from qa.lexical import tokenize

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEV_QUESTIONS = ROOT / "eval" / "dev.jsonl"
S300 = "When did Russia deliver the S-300 to Iran?"


class FakeEmbedder:
    """Unit vectors from hashed word stems: texts sharing words are close. Not a language model."""

    model_id = "fake/hashed-stems"
    model_version = "fake==1"
    dimension = 64
    encoder = "fake"

    def encode(self, texts, batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, terms in enumerate(tokenize(list(texts))):
            for term in terms:
                out[row, int(hashlib.md5(term.encode()).hexdigest(), 16) % self.dimension] += 1.0
        out[:, 0] += 1e-3  # no zero vectors
        return out / np.linalg.norm(out, axis=1, keepdims=True)


TINY_TEXT = """A Small Report on Rivers

By A. Writer

river_photo.jpg

Rivers carry water from the mountains to the sea. The U.S. has many long rivers.

The Nile

The Nile is the longest river in Africa. It flows north through Egypt into the Mediterranean Sea.

Farmers along the Nile depend on its yearly flood. Gen. Smith and Dr. Jones studied the flood in 1990.

The Amazon

The Amazon carries more water than any other river. Its basin holds the largest rainforest on Earth.
"""

TINY_MARKDOWN = """# Notes on Mountains

**Paper ID:** 1234.5678

## Abstract

Mountains are formed by tectonic forces. Erosion wears them down over millions of years.

## Experiments ::: Measuring Height

| peak | height |
|---|---|
| Everest | 8849 |

Everest is the highest mountain above sea level. Its height was measured again in 2020.

![A photo](peak.png)

### Glaciers

Glaciers carve valleys in high mountains and feed rivers in spring.
"""


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "rivers.txt").write_text(TINY_TEXT, encoding="utf-8")
    (corpus / "mountains.md").write_text(TINY_MARKDOWN, encoding="utf-8")
    return corpus


@pytest.fixture
def tiny_index(tiny_corpus: Path, fake_embedder: FakeEmbedder) -> Path:
    index = tiny_corpus.parent / "index"
    build(tiny_corpus, index, fake_embedder)
    return index


@pytest.fixture
def app(tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder):
    return create_app({"TESTING": True, "CORPUS": str(tiny_corpus), "INDEX": str(tiny_index),
                       "EMBEDDER": fake_embedder})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(tiny_corpus: Path, tiny_index: Path, monkeypatch) -> CliRunner:
    """A CLI runner pointed at the tiny corpus and index (through the environment, as an operator would)."""
    monkeypatch.setenv("QA_CORPUS", str(tiny_corpus))
    monkeypatch.setenv("QA_INDEX", str(tiny_index))
    return CliRunner()


# ---------------------------------------------------------------- the real model and index


@pytest.fixture(scope="session")
def real_embedder():
    from qa.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def real_paths(tmp_path_factory, real_embedder) -> tuple[Path, Path]:
    """(corpus, index): a copy of the bundled corpus and a real index built from it with `qa build`'s code path."""
    from qa.cli import run_build

    base = tmp_path_factory.mktemp("real")
    corpus = base / "corpus"
    shutil.copytree(CORPUS, corpus)
    run_build(str(corpus), str(base / "index"))
    return corpus, base / "index"


@pytest.fixture(scope="session")
def real_searcher(real_paths):
    from qa.engine import open_searcher

    corpus, index = real_paths
    return open_searcher(index, corpus)


@pytest.fixture(scope="session")
def real_app(real_paths, real_searcher):
    corpus, index = real_paths
    return create_app({"TESTING": True, "CORPUS": str(corpus), "INDEX": str(index),
                       "EMBEDDER": real_searcher.embedder})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


@pytest.fixture(scope="session")
def live_server(real_paths):
    """A real `qa serve` (gunicorn, 2 workers) on a loopback port, over the real index; yields its base URL."""
    corpus, index = real_paths
    port = free_port()
    env = {**os.environ, "QA_CORPUS": str(corpus), "QA_INDEX": str(index)}
    log = open(index.parent / "serve.log", "wb")  # a file, not a pipe nobody reads: it never fills up
    process = subprocess.Popen(
        [sys.executable, "-m", "qa.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
         "--no-build"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/api/health")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium (Debian's) for the whole session: Playwright's sync API runs one at a time."""
    sync_api = pytest.importorskip("playwright.sync_api")
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (never `playwright install`)"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()

