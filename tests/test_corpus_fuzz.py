"""Fuzzing the corpus: random sequences of edits to `corpus/`, with `qa build` after each (a Hypothesis state
machine).

Each step adds a document (valid, empty, title-only, binary, Latin-1, random text, very long, one line), edits,
renames (possibly to another format), deletes or touches one, then runs `qa build`, `qa info` and `qa search` through
the CLI, and checks that

- the build exits 0 without a traceback (or, when no file is a document, exits 2 saying so),
- the index is fresh afterwards (`qa info`), and `qa search` answers,
- every result's offsets slice its document's text, and its highlights lie inside it,
- the incremental index equals a fresh build of the same corpus: same documents, passages, vectors, skipped files
  and search results (scores included),
- nothing is left behind in `index/`: the pointer, at most two finished builds, no staging folder or temporary file.

The fake embedder keeps each step fast (the CLI builds with it, and its freshness check takes it for the model).
The default run tries QA_FUZZ_EXAMPLES sequences (default 8) of up to QA_FUZZ_STEPS steps (default 8); for a
longer run: `QA_FUZZ_EXAMPLES=300 QA_FUZZ_STEPS=20 pytest tests/test_corpus_fuzz.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from conftest import FakeEmbedder
from qa.cli import main
from qa.documents import CorpusError
from qa.index import BUILDS, KEEP_BUILDS, LOCK_FILE, POINTER, build, live_build, load

EXAMPLES = int(os.environ.get("QA_FUZZ_EXAMPLES", "8"))
STEPS = int(os.environ.get("QA_FUZZ_STEPS", "8"))
QUERIES = ["Which river floods in spring?", "mountain glacier valley", "café"]

STEMS = ["a", "b", "c", "notes/d", "notes/deep/e", "space name", "Ünïcode"]
EXTENSIONS = [".txt", ".md", ".markdown"]
WORDS = ("river flood spring mountain glacier valley water sea rain forest café naïve Nile Amazon "
         "the a of and in is was were by to from U.S. Dr. e.g. 1990 3.5").split()

words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=14).map(" ".join)
sentences = st.builds(lambda w, end: w[:1].upper() + w[1:] + end, words, st.sampled_from([".", "?", "!", "", "…"]))
paragraphs = st.lists(sentences, min_size=1, max_size=5).map(" ".join)
headings = st.sampled_from(["Rivers", "## Mountains", "# Second Title", "Cyber Warfare", "### Deep heading"])
newlines = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def valid_documents(draw) -> bytes:
    blocks = [draw(st.sampled_from(["# A Title", "A Title", "By Someone", ""]))]
    for _ in range(draw(st.integers(1, 6))):
        blocks.append(draw(st.one_of(paragraphs, headings)))
    blocks.append(draw(paragraphs))
    return draw(newlines).join(b + "\n" for b in blocks).encode("utf-8")


CONTENTS = {
    "valid": valid_documents(),
    "empty": st.sampled_from([b"", b"\n", b"  \n\t\n", "\ufeff".encode("utf-8")]),
    "title-only": st.sampled_from([b"# Only a Title\n", b"Only A Title\n", b"# T\n\n## H\n", b"photo.jpg\n"]),
    "binary": st.binary(min_size=1, max_size=300).map(lambda b: b + b"\x00" + b),
    "latin-1": paragraphs.map(lambda p: f"Café\n\n{p} Ça coûte très cher.\n".encode("latin-1", "replace")),
    "random text": st.text(st.characters(exclude_categories=["Cs"]), max_size=200).map(lambda t: t.encode("utf-8")),
    "random bytes": st.binary(max_size=200),
    "very long": st.builds(lambda p, n, one: (("Long\n\n" + (p + "\n\n") * n) if not one
                                              else "Long\n\n" + " ".join(["word"] * 5000) + "\n").encode("utf-8"),
                           paragraphs, st.integers(50, 400), st.booleans()),
    "one line": sentences.map(lambda s: s.encode("utf-8")),
}
contents = st.one_of(*CONTENTS.values())


@contextmanager
def fake_encoder(index: Path):
    yield FakeEmbedder(), None


def answer_without_timing(response: dict) -> dict:
    return {k: v for k, v in response.items() if k not in ("took_ms", "index")}


class CorpusEdits(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.base = Path(tempfile.mkdtemp(prefix="corpus-fuzz-"))
        self.corpus, self.index = self.base / "corpus", self.base / "index"
        self.corpus.mkdir()
        self.files: dict[str, str] = {}  # stem -> extension of every file in the corpus
        self.runner = CliRunner(env={"QA_CORPUS": str(self.corpus), "QA_INDEX": str(self.index)})
        self.built = False

    def teardown(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def path(self, stem: str) -> Path:
        return self.corpus / (stem + self.files[stem])

    def write(self, stem: str, extension: str, raw: bytes) -> None:
        self.files[stem] = extension
        self.path(stem).parent.mkdir(parents=True, exist_ok=True)
        self.path(stem).write_bytes(raw)

    # ---------------------------------------------------------------- edits

    @initialize(raw=CONTENTS["valid"])
    def first_document(self, raw: bytes) -> None:
        self.write("first", ".md", raw)
        self.build_and_check()

    @rule(stem=st.sampled_from(STEMS), extension=st.sampled_from(EXTENSIONS), raw=contents)
    def add(self, stem: str, extension: str, raw: bytes) -> None:
        if stem not in self.files:  # one file per id: two would be a (tested) error, not a document
            self.write(stem, extension, raw)
        self.build_and_check()

    @precondition(lambda self: self.files)
    @rule(data=st.data(), raw=contents, append=st.booleans())
    def edit(self, data, raw: bytes, append: bool) -> None:
        stem = data.draw(st.sampled_from(sorted(self.files)))
        with open(self.path(stem), "ab" if append else "wb") as f:
            f.write(raw)
        self.build_and_check()

    @precondition(lambda self: self.files)
    @rule(data=st.data(), to=st.sampled_from(STEMS + ["first"]), extension=st.sampled_from(EXTENSIONS))
    def rename(self, data, to: str, extension: str) -> None:
        stem = data.draw(st.sampled_from(sorted(self.files)))
        if to == stem or to not in self.files:
            source = self.path(stem)
            del self.files[stem]
            self.files[to] = extension
            self.path(to).parent.mkdir(parents=True, exist_ok=True)
            source.rename(self.path(to))
        self.build_and_check()

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def delete(self, data) -> None:
        stem = data.draw(st.sampled_from(sorted(self.files)))
        self.path(stem).unlink()
        del self.files[stem]
        self.build_and_check()

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def touch(self, data) -> None:
        path = self.path(data.draw(st.sampled_from(sorted(self.files))))
        os.utime(path, (path.stat().st_atime + 10, path.stat().st_mtime + 10))
        self.build_and_check()

    # ---------------------------------------------------------------- checks after every build

    def build_and_check(self) -> None:
        result = self.runner.invoke(main, ["build"])
        assert "Traceback" not in result.output and not isinstance(result.exception, Exception), result.output
        fresh_index = self.base / "fresh-index"
        shutil.rmtree(fresh_index, ignore_errors=True)
        readable = True
        try:
            build(self.corpus, fresh_index, FakeEmbedder())
        except CorpusError as exc:  # the only refusal expected: no document at all
            assert "no readable documents" in str(exc), exc
            readable = False
        if not readable:
            assert result.exit_code == 2 and "no readable documents" in result.stderr, result.output
            return
        assert result.exit_code == 0, result.output
        self.built = True
        info = json.loads(self.runner.invoke(main, ["info", "--json"]).stdout)
        assert info["stale"] is False, info["stale_reasons"]
        incremental, fresh = load(self.index), load(fresh_index)
        assert incremental.documents == fresh.documents
        assert incremental.chunks == fresh.chunks
        assert np.array_equal(incremental.vectors, fresh.vectors)
        assert np.array_equal(incremental.sentence_vectors, fresh.sentence_vectors)
        assert np.array_equal(incremental.highlight_vectors, fresh.highlight_vectors)
        for key in ("files", "skipped", "documents", "chunks"):
            assert incremental.manifest.get(key) == fresh.manifest.get(key), key
        from qa.engine import open_searcher

        fresh_searcher = open_searcher(fresh_index, embedder=FakeEmbedder())
        for query in QUERIES:
            searched = self.runner.invoke(main, ["search", "--json", "-k", "50", query])
            assert searched.exit_code == 0, searched.output
            response = json.loads(searched.stdout)
            assert response["results"]
            for r in response["results"]:
                text = incremental.documents[r["document"]].text
                assert text[r["start"]:r["end"]] == r["text"]
                assert all(r["start"] <= h["start"] < h["end"] <= r["end"] for h in r["highlights"])
            assert answer_without_timing(response) == answer_without_timing(fresh_searcher.search(query, 50))

    @invariant()
    def nothing_left_behind_in_the_index(self) -> None:
        if not self.index.exists():
            return
        # the lock file stays: removing it safely is not possible while another build may open it
        assert sorted(p.name for p in self.index.iterdir()) == sorted([LOCK_FILE, POINTER, BUILDS])
        builds = sorted(p.name for p in (self.index / BUILDS).iterdir())
        assert not [b for b in builds if b.startswith(".")] and 1 <= len(builds) <= KEEP_BUILDS
        assert live_build(self.index).name in builds


def test_random_corpus_edits_keep_every_build_whole_and_equal_to_a_fresh_one(monkeypatch):
    # The CLI builds with the fake embedder and takes it for the model it serves with.
    monkeypatch.setattr("qa.build_encoder.build_encoder", fake_encoder)
    monkeypatch.setattr("qa.engine.MODEL_ID", FakeEmbedder.model_id)
    monkeypatch.setattr("qa.engine.installed_model_version", lambda index: FakeEmbedder.model_version)
    monkeypatch.setattr("qa.engine.load_embedder", lambda index, *settings: FakeEmbedder())
    monkeypatch.setattr("qa.onnx_embedding.has_export", lambda build: True)  # a fresh index is left alone
    run_state_machine_as_test(CorpusEdits, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]))
