"""Whatever lands in the corpus folder, `qa build` builds and the index stays fresh.

One rule says which files are documents (`documents.check_readable`): the build, the freshness check, `qa info` and
the reader all apply it. Empty, title-only, binary and non-UTF-8 files are skipped, named with their reason, recorded
in the manifest with their hash, and never make the index stale. Unit tests use the fake embedder; the last test runs
the real `qa build`, `qa info` and `qa search` with the real model.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import TINY_TEXT, FakeEmbedder
from qa.cli import main
from qa.documents import UNREADABLE_HASH, scan_corpus
from qa.index import build, load, stale_reasons

NOT_DOCUMENTS = {  # file -> bytes that are not a document, and the start of the reason given
    "empty.md": (b"", "empty file"),
    "blank.txt": (b" \n\n\t\n", "empty file"),
    "bom-only.txt": ("\ufeff".encode("utf-8"), "empty file"),
    "title-only.md": (b"# Only a title\n", "no text to index"),
    "title-line.txt": (b"Only A Title\n", "no text to index"),
    "headings-only.md": (b"# Title\n\n## One\n\n## Two\n", "no text to index"),
    "image-only.txt": (b"photo.jpg\n", "no text to index"),
    "binary.txt": (bytes(range(256)) * 4, "binary file"),
    "latin-1.txt": ("Café\n\nUne phrase en français, écrite en Latin-1.\n".encode("latin-1"), "not UTF-8 text"),
    "utf-16.md": ("# Title\n\nText.\n".encode("utf-16"), "binary file"),
}


def fresh(corpus: Path, index: Path) -> list[str]:
    return stale_reasons(load(index).manifest, corpus, FakeEmbedder.model_id, FakeEmbedder.model_version)


@pytest.mark.parametrize("name", ["empty.md", "title-only.md", "title-line.txt", "blank.txt"])
def test_a_file_without_passages_does_not_break_later_builds(tiny_corpus, fake_embedder, name):
    """It used to be indexed as a document without chunks, and the next incremental build raised KeyError."""
    index = tiny_corpus.parent / "index"
    (tiny_corpus / "notes").mkdir()
    (tiny_corpus / "notes" / name).write_bytes(NOT_DOCUMENTS[name][0])
    build(tiny_corpus, index, fake_embedder)
    (tiny_corpus / "rivers.txt").write_text(TINY_TEXT + "\nOne more sentence about rivers.\n", encoding="utf-8")
    report = build(tiny_corpus, index, fake_embedder)
    assert report.changed == ["rivers"] and report.unchanged == ["mountains"]
    assert [s.path for s in report.skipped] == [f"notes/{name}"]
    assert set(load(index).documents) == {"rivers", "mountains"}


def test_every_kind_of_non_document_is_skipped_with_its_reason(tiny_corpus, fake_embedder):
    for name, (raw, _) in NOT_DOCUMENTS.items():
        (tiny_corpus / name).write_bytes(raw)
    report = build(tiny_corpus, tiny_corpus.parent / "index", fake_embedder)
    reasons = {s.path: s.reason for s in report.skipped}
    assert reasons.keys() == NOT_DOCUMENTS.keys()
    for name, (_, reason) in NOT_DOCUMENTS.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    assert sorted(report.added) == ["mountains", "rivers"]


def test_skipped_files_never_make_the_index_stale(tiny_corpus, fake_embedder):
    """Before, `qa info` said `STALE: new file binary.txt` after every build, and `qa search` refused to run."""
    index = tiny_corpus.parent / "index"
    for name, (raw, _) in NOT_DOCUMENTS.items():
        (tiny_corpus / name).write_bytes(raw)
    build(tiny_corpus, index, fake_embedder)
    assert fresh(tiny_corpus, index) == []
    manifest = load(index).manifest
    assert set(manifest["skipped"]) == set(NOT_DOCUMENTS) and not set(manifest["skipped"]) & set(manifest["files"])


def test_a_skipped_file_that_changes_or_vanishes_makes_the_index_stale_until_rebuilt(tiny_corpus, fake_embedder):
    index = tiny_corpus.parent / "index"
    (tiny_corpus / "later.md").write_bytes(b"")
    (tiny_corpus / "gone.txt").write_bytes(b"\xff\xfe broken")
    build(tiny_corpus, index, fake_embedder)
    (tiny_corpus / "later.md").write_text("# Later\n\nLakes hold fresh water.\n", encoding="utf-8")
    (tiny_corpus / "gone.txt").unlink()
    assert fresh(tiny_corpus, index) == ["file removed: gone.txt", "file changed: later.md"]
    report = build(tiny_corpus, index, fake_embedder)
    assert report.added == ["later"] and report.skipped == []
    assert fresh(tiny_corpus, index) == []
    (tiny_corpus / "later.md").write_text("# Later\n", encoding="utf-8")  # a document becomes title-only
    report = build(tiny_corpus, index, fake_embedder)
    assert report.removed == ["later"] and [s.path for s in report.skipped] == ["later.md"]
    assert fresh(tiny_corpus, index) == [] and "later" not in load(index).documents


def test_a_file_that_cannot_be_opened_is_skipped_and_stays_skipped(tiny_corpus, fake_embedder, monkeypatch):
    locked = tiny_corpus / "locked.txt"
    locked.write_text("Locked\n\nA document nobody may read.\n", encoding="utf-8")
    real_read_bytes = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        if path.name == "locked.txt":
            raise PermissionError(13, "Permission denied")
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    index = tiny_corpus.parent / "index"
    report = build(tiny_corpus, index, fake_embedder)
    (skipped,) = report.skipped
    assert (skipped.path, skipped.sha256, skipped.reason) == ("locked.txt", UNREADABLE_HASH,
                                                              "cannot be read (Permission denied)")
    assert fresh(tiny_corpus, index) == []
    monkeypatch.undo()  # readable again: its bytes now have a hash, so the index is stale until rebuilt
    assert fresh(tiny_corpus, index) == ["file changed: locked.txt"]


def test_renaming_a_file_to_another_format_reparses_it(tiny_corpus, fake_embedder):
    """Same bytes under the same id but another extension: another parser, so the passages are not reused."""
    index = tiny_corpus.parent / "index"
    build(tiny_corpus, index, fake_embedder)
    (tiny_corpus / "mountains.md").rename(tiny_corpus / "mountains.txt")
    report = build(tiny_corpus, index, fake_embedder)
    assert report.changed == ["mountains"]
    incremental = load(index)
    build(tiny_corpus, tiny_corpus.parent / "fresh", fake_embedder)
    assert incremental.chunks == load(tiny_corpus.parent / "fresh").chunks


def test_the_reader_applies_the_same_rule(tiny_corpus):
    for name, (raw, _) in NOT_DOCUMENTS.items():
        (tiny_corpus / name).write_bytes(raw)
    scanned = scan_corpus(tiny_corpus)
    assert [d.id for d in scanned.documents] == ["mountains", "rivers"]
    assert sorted(s.path for s in scanned.skipped) == sorted(NOT_DOCUMENTS)


# ---------------------------------------------------------------- the CLI: what `qa build` and `qa info` say


@contextmanager
def fake_encoder(index: Path):
    yield FakeEmbedder(), None


@pytest.fixture
def fake_cli(tiny_corpus, monkeypatch) -> CliRunner:
    """`qa` over the tiny corpus, building with the fake embedder."""
    monkeypatch.setattr("qa.build_encoder.build_encoder", fake_encoder)
    monkeypatch.setenv("QA_CORPUS", str(tiny_corpus))
    monkeypatch.setenv("QA_INDEX", str(tiny_corpus.parent / "index"))
    return CliRunner()


def test_qa_build_names_each_skipped_file_and_why(fake_cli, tiny_corpus):
    (tiny_corpus / "notes").mkdir()
    (tiny_corpus / "notes" / "empty.md").write_bytes(b"")
    (tiny_corpus / "notes" / "title.txt").write_bytes(b"Just A Title\n")
    (tiny_corpus / "latin-1.txt").write_bytes("Café au lait.\n".encode("latin-1"))
    result = fake_cli.invoke(main, ["build"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "skipped latin-1.txt: not UTF-8 text (invalid continuation byte at byte 3)" in lines
    assert "skipped notes/empty.md: empty file" in lines
    assert "skipped notes/title.txt: no text to index (only a title, headings or image lines)" in lines
    assert lines[-1].endswith("(added 2, changed 0, removed 0, unchanged 0, skipped 3)")


def test_qa_info_lists_the_skipped_files_with_their_reasons(fake_cli, tiny_corpus):
    (tiny_corpus / "binary.txt").write_bytes(NOT_DOCUMENTS["binary.txt"][0])
    assert fake_cli.invoke(main, ["build"]).exit_code == 0
    info = json.loads(fake_cli.invoke(main, ["info", "--json"]).stdout)
    assert info["skipped"] == [{"path": "binary.txt", "reason": "binary file (NUL bytes), not text"}]
    assert not [r for r in info["stale_reasons"] if "binary.txt" in r]  # (stale only for the fake model)
    text = fake_cli.invoke(main, ["info"]).stdout
    assert "skipped    1 file(s), not documents:\n  binary.txt: binary file (NUL bytes), not text\n" in text


# ---------------------------------------------------------------- the real model


@pytest.mark.model
def test_real_build_info_and_search_with_odd_files_in_the_corpus(real_paths, tmp_path):
    """The trial from the report, with the real model: odd files, then an edit; every command keeps working."""
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    shutil.copytree(real_paths[0], corpus)
    shutil.copytree(real_paths[1], index)  # the live build and its export: only new documents are embedded
    (corpus / "notes").mkdir()
    (corpus / "notes" / "empty.md").write_bytes(b"")
    (corpus / "notes" / "title.md").write_bytes(b"# Just a title\n")
    (corpus / "binary.txt").write_bytes(NOT_DOCUMENTS["binary.txt"][0])
    (corpus / "latin-1.txt").write_bytes(NOT_DOCUMENTS["latin-1.txt"][0])
    (corpus / "notes" / "other.md").write_text("# Other\n\nThe Nile floods every summer.\n", encoding="utf-8")
    runner = CliRunner(env={"QA_CORPUS": str(corpus), "QA_INDEX": str(index)})
    for edit in (None, "The Amazon floods too.\n"):
        if edit:
            with open(corpus / "notes" / "other.md", "a", encoding="utf-8") as f:
                f.write(edit)
        built = runner.invoke(main, ["build"])
        assert built.exit_code == 0 and "Traceback" not in built.output, built.output
        assert "skipped notes/empty.md: empty file" in built.stderr
        info = json.loads(runner.invoke(main, ["info", "--json"]).stdout)
        assert info["stale"] is False, info["stale_reasons"]
        assert [s["path"] for s in info["skipped"]] == ["binary.txt", "latin-1.txt", "notes/empty.md",
                                                        "notes/title.md"]
        searched = runner.invoke(main, ["search", "--json", "-k", "3", "Which river floods every summer?"])
        assert searched.exit_code == 0, searched.output
        results = json.loads(searched.stdout)["results"]
        assert len(results) == 3 and results[0]["document"] == "notes/other"
    assert "nothing to do" in runner.invoke(main, ["build"]).stderr
