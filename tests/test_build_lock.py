"""Builds that cannot collide: real `qa build` processes on one index, run at once or killed half way (SIGKILL)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qa.engine import open_searcher
from qa.index import BUILDS, live_build, load

from conftest import S300

pytestmark = pytest.mark.model

DEADLINE_SECONDS = 300.0


def copy_real(real_paths, tmp_path: Path) -> tuple[Path, Path]:
    corpus, index = real_paths
    shutil.copytree(corpus, tmp_path / "corpus")
    shutil.copytree(index, tmp_path / "index")
    return tmp_path / "corpus", tmp_path / "index"


def change_a_document(corpus: Path) -> None:
    document = next(p for p in corpus.rglob("*") if p.is_file())
    document.write_text(document.read_text(encoding="utf-8") + "\n\nA closing paragraph on the weather.\n",
                        encoding="utf-8")


def start_build(corpus: Path, index: Path, log: Path) -> subprocess.Popen:
    with open(log, "wb") as err:  # a file, not a pipe nobody reads: it never fills up
        return subprocess.Popen([sys.executable, "-m", "qa.cli", "build", "--corpus", str(corpus),
                                 "--index", str(index)], stdout=subprocess.DEVNULL, stderr=err)


def wait_until(condition, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert process.poll() is None, f"the build ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE_SECONDS} s"
        time.sleep(0.05)


def staging_folders(index: Path) -> list[Path]:
    return sorted((index / BUILDS).glob(".staging-*"))


def test_a_second_build_waits_for_the_first_then_finds_the_index_up_to_date(real_paths, tmp_path):
    corpus, index = copy_real(real_paths, tmp_path)
    change_a_document(corpus)
    before = live_build(index)
    first = start_build(corpus, index, tmp_path / "first.log")
    second: subprocess.Popen | None = None
    try:
        wait_until(lambda: "embedding" in (tmp_path / "first.log").read_text(errors="replace"),
                   "embedding by the first build", first)
        second = start_build(corpus, index, tmp_path / "second.log")
        wait_until(lambda: "waiting for it to finish" in (tmp_path / "second.log").read_text(errors="replace"),
                   "message from the second build", second)
        assert first.poll() is None  # it said so while the first was still building
        assert first.wait(DEADLINE_SECONDS) == 0 and second.wait(DEADLINE_SECONDS) == 0
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    built = load(index)
    assert built.path != before and "weather" in built.chunks[-1].text
    first_log, second_log = (tmp_path / "first.log").read_text(), (tmp_path / "second.log").read_text()
    assert f"built {built.build_id}" in first_log
    assert f"another build of {index} is running: waiting for it to finish" in second_log
    assert f"index is up to date (build {built.build_id}): nothing to do" in second_log  # one build, not two
    assert sorted(p.name for p in (index / BUILDS).iterdir()) == sorted([before.name, built.build_id])


def test_a_build_killed_half_way_leaves_the_live_index_and_the_next_build_cleans_up(real_paths, tmp_path):
    """Killed while exporting the model (a scratch folder under builds/), the live build keeps answering; the next
    build succeeds and removes what the killed one left."""
    corpus, index = copy_real(real_paths, tmp_path)
    before = live_build(index)
    shutil.rmtree(before / "onnx")  # nothing to reuse: the next build exports the model afresh
    answer = open_searcher(index, corpus).search(S300)["results"]
    killed = start_build(corpus, index, tmp_path / "killed.log")
    try:
        wait_until(lambda: any((p / "onnx" / "model.onnx").is_file() for p in staging_folders(index)),
                   "exported graph", killed)
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(DEADLINE_SECONDS) == -signal.SIGKILL
    finally:
        if killed.poll() is None:
            killed.kill()
    left = staging_folders(index)
    assert left  # half way: its scratch export is still there
    assert live_build(index) == before and open_searcher(index, corpus).search(S300)["results"] == answer

    done = subprocess.run([sys.executable, "-m", "qa.cli", "build", "--corpus", str(corpus), "--index", str(index)],
                          capture_output=True, text=True, timeout=DEADLINE_SECONDS)
    assert done.returncode == 0, done.stderr
    assert staging_folders(index) == [] and not list(index.glob(".CURRENT.*"))
    after = load(index)
    assert after.path != before and (after.path / "onnx" / "model.onnx").is_file()
    assert open_searcher(index, corpus).search(S300)["results"][0]["section"] == answer[0]["section"]
