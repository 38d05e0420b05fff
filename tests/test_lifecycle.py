"""The index's life under load: rebuilds while answering, damaged builds refused, repairs, concurrency, a killed worker.

Short, bounded versions of bench/soak.py (whose helpers they use); each test takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import TINY_TEXT, FakeEmbedder
from qa.app import create_app
from qa.cli import main
from qa.index import build, live_build

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import soak  # noqa: E402

QUESTION = "Which river is the longest?"
CHANGED_TEXT = TINY_TEXT.replace("The Nile is the longest river in Africa.",
                                 "The Nile is the longest river in Africa, and the longest river is the Nile.")
RELOAD_SECONDS = 10.0
SEARCH_PATH = "/api/search?k=3&q=" + quote(QUESTION)


class OtherModel(FakeEmbedder):
    model_id = "other/model"


def answer(client, question: str = QUESTION) -> tuple[int, list]:
    response = client.get("/api/search", query_string={"q": question, "k": 5})
    return response.status_code, (response.get_json() or {}).get("results")


def wait_until(predicate, seconds: float = RELOAD_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def serving(client) -> str | None:
    response = client.get("/api/health")
    return response.get_json()["index"]["build"] if response.status_code == 200 else None


# ---------------------------------------------------------------- a rebuild while answering


def test_rebuild_under_load_every_answer_is_from_one_complete_index(app, tiny_corpus, tiny_index, fake_embedder):
    client = app.test_client()
    old_build, (_, old) = serving(client), answer(client)
    answers: list[tuple[int, list]] = []
    stop = threading.Event()

    def reader() -> None:
        own = app.test_client()
        while not stop.is_set():
            answers.append(answer(own))

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in readers:
        t.start()
    try:
        time.sleep(0.3)
        (tiny_corpus / "rivers.txt").write_text(CHANGED_TEXT, encoding="utf-8")
        new_build = build(tiny_corpus, tiny_index, fake_embedder).build_id
        wait_until(lambda: serving(client) == new_build)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in readers:
            t.join()
    new = answer(client)[1]
    assert old != new and old_build != new_build
    assert {status for status, _ in answers} == {200}
    assert all(results in (old, new) for _, results in answers)
    assert old in [r for _, r in answers] and new in [r for _, r in answers]
    print(f"rebuild under load: {len(answers)} requests, all 200")


# ---------------------------------------------------------------- damaged builds


def truncate(name: str):
    def damage(build_dir: Path) -> None:
        path = build_dir / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return damage


def edit_manifest(change):
    def damage(build_dir: Path) -> None:
        path = build_dir / "manifest.json"
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest))
    return damage


DAMAGE = {
    "truncated vectors": truncate("vectors.npy"),
    "truncated sentence vectors": truncate("sentences.npy"),
    "truncated FAISS index": truncate("faiss.index"),
    "truncated chunks": truncate("chunks.bin"),
    "garbage manifest": lambda b: (b / "manifest.json").write_text("{not json"),
    "missing documents file": lambda b: (b / "documents.bin").unlink(),
    "missing vectors file": lambda b: (b / "vectors.npy").unlink(),
    "manifest from another model": edit_manifest(lambda m: m.update(model={"id": "other/model", "version": "1"})),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_index_is_a_503_then_a_rebuild_repairs_it(tiny_corpus, tiny_index, fake_embedder, kind):
    DAMAGE[kind](live_build(tiny_index))
    client = create_app({"TESTING": True, "INDEX": str(tiny_index), "EMBEDDER": fake_embedder}).test_client()
    for path in ("/api/search?q=Nile", "/api/documents", "/api/health"):
        response = client.get(path)
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert "qa build" in response.get_json()["error"]["message"]
    assert client.get("/").status_code == 503
    build(tiny_corpus, tiny_index, fake_embedder)
    wait_until(lambda: answer(client)[0] == 200)


def test_a_manifest_missing_its_counts_is_a_503_not_a_500(tiny_index, fake_embedder):
    """index.load lets a KeyError out here; the server still answers clearly."""
    edit_manifest(lambda m: m.pop("chunks"))(live_build(tiny_index))
    client = create_app({"TESTING": True, "INDEX": str(tiny_index), "EMBEDDER": fake_embedder}).test_client()
    assert client.get("/api/search?q=Nile").status_code == 503


@pytest.mark.parametrize("kind", [k for k in DAMAGE if k != "manifest from another model"])
def test_the_cli_names_the_damage_without_a_traceback(runner, tiny_index, kind):
    DAMAGE[kind](live_build(tiny_index))
    for command in (["search", "Nile"], ["info"]):
        result = runner.invoke(main, command)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: index") and "qa build" in result.output
        assert "Traceback" not in result.output


def test_the_cli_refuses_an_index_of_another_model(runner, tiny_index):
    result = runner.invoke(main, ["search", "Nile"])  # the tiny index is the fake model's; the CLI serves MiniLM
    assert result.exit_code == 2 and "stale" in result.output and "qa build" in result.output


@pytest.mark.parametrize("command", [["search", "Nile"], pytest.param(["build"], marks=pytest.mark.model)])
def test_a_missing_corpus_is_a_clear_cli_error(runner, tiny_corpus, command):
    shutil.rmtree(tiny_corpus)
    result = runner.invoke(main, command)
    assert result.exit_code == 2 and "corpus folder not found" in result.output, result.output
    assert "Traceback" not in result.output


def test_a_missing_corpus_leaves_the_server_answering_from_its_complete_index(app, client, tiny_corpus):
    """The index holds the documents' text: a server never reads the corpus, so it keeps answering."""
    shutil.rmtree(tiny_corpus)
    assert answer(client)[0] == 200


def test_a_new_build_of_another_model_is_refused_and_the_old_one_kept(app, client, tiny_corpus, tiny_index):
    old_build, old = serving(client), answer(client)
    build(tiny_corpus, tiny_index, OtherModel())
    wait_until(lambda: "warning" in client.get("/api/health").get_json())
    health = client.get("/api/health").get_json()
    assert health["index"]["build"] == old_build and "other/model" in health["warning"]
    assert answer(client) == old
    repaired = build(tiny_corpus, tiny_index, FakeEmbedder()).build_id
    wait_until(lambda: serving(client) == repaired)
    assert "warning" not in client.get("/api/health").get_json()


@pytest.mark.model
def test_qa_build_repairs_a_damaged_index(runner, tiny_index):
    DAMAGE["truncated vectors"](live_build(tiny_index))
    assert runner.invoke(main, ["search", "Nile"]).exit_code == 2
    result = runner.invoke(main, ["build"])
    assert result.exit_code == 0 and "built" in result.output, result.output
    repaired = runner.invoke(main, ["search", "--json", "Which river is the longest?"])
    assert repaired.exit_code == 0 and json.loads(repaired.stdout)["results"]


# ---------------------------------------------------------------- concurrency

QUESTIONS = ["When did Russia deliver the S-300 to Iran?", "What do Iranian shoppers think of Chinese goods?",
             "Cyber attacks on Iran", "nuclear deal", "Syria"]


@pytest.mark.model
def test_threads_get_identical_answers_to_identical_questions(real_app):
    reference = {q: answer(real_app.test_client(), q) for q in QUESTIONS}
    mismatches, count = [], [0]
    deadline = time.monotonic() + 4

    def asker(offset: int) -> None:
        own = real_app.test_client()
        i = offset
        while time.monotonic() < deadline:
            q = QUESTIONS[i % len(QUESTIONS)]
            got = answer(own, q)
            count[0] += 1
            if got != reference[q]:
                mismatches.append(q)
            i += 1

    threads = [threading.Thread(target=asker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count[0] > 8 and not mismatches


# ---------------------------------------------------------------- the real server


@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    """A `qa serve` of its own (2 workers) over a small real index: these tests rebuild it and kill workers."""
    from qa.build_encoder import build_encoder

    base = tmp_path_factory.mktemp("own")
    corpus, index = base / "corpus", base / "index"
    corpus.mkdir()
    (corpus / "rivers.txt").write_text(TINY_TEXT, encoding="utf-8")
    with build_encoder(index) as (embedder, extras):
        build(corpus, index, embedder, extras=extras)
    server = soak.Server(corpus, index, workers=2).start()
    yield server
    server.stop()


@pytest.mark.server
@pytest.mark.model
def test_real_server_rebuild_under_load_fails_no_request(own_server):
    from qa.cli import run_build

    old = soak.one_request(own_server.base, SEARCH_PATH).answer
    old_build = own_server.build_id()
    with soak.Load(own_server.base, [SEARCH_PATH], clients=4) as load:
        (own_server.corpus / "rivers.txt").write_text(CHANGED_TEXT, encoding="utf-8")
        run_build(str(own_server.corpus), str(own_server.index))  # what `qa build` runs
        wait_until(lambda: all(own_server.build_id() != old_build for _ in range(20)))  # both workers, surely
    new = soak.one_request(own_server.base, SEARCH_PATH).answer
    answers = [o.answer for o in load.outcomes]
    assert old != new
    assert {o.status for o in load.outcomes} == {200}
    assert set(answers) == {old, new}
    print(f"real server rebuild: {len(answers)} requests, all 200, {answers.count(old)} old, {answers.count(new)} new")


@pytest.mark.server
@pytest.mark.model
def test_a_killed_worker_is_replaced_and_only_its_requests_fail(own_server):
    paths = [SEARCH_PATH, "/api/health"]
    clients = 6
    with soak.Load(own_server.base, paths, clients=clients) as load:
        time.sleep(1.0)
        victim = own_server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        soak.wait_for_replacement(own_server, victim, workers=2)
        time.sleep(1.0)
    failures = [o for o in load.outcomes if o.status != 200]
    assert len(failures) <= clients  # at most one request in flight per client
    assert all(o.started <= killed_at <= o.ended for o in failures)  # only those in flight at the kill
    assert [o.status for o in load.outcomes if o.started > killed_at + 0.5][-20:] == [200] * 20
    assert soak.normal_answers(own_server.base, paths) == 20
    print(f"SIGKILL: {len(load.outcomes)} requests, {len(failures)} failed (in flight on the killed worker)")



def test_the_watcher_outlives_an_unreachable_database(monkeypatch):
    """The thread that notices new builds keeps watching while the database is down (requests answer 503 meanwhile),
    and ends once its holder is gone."""
    import weakref

    from qa import engine
    from qa.index import IndexUnavailable

    class DownThenUp:
        checks = 0

        def refresh(self) -> None:
            DownThenUp.checks += 1
            if DownThenUp.checks <= 3:
                raise IndexUnavailable("database at … is unreachable")

    monkeypatch.setattr(engine, "RELOAD_CHECK_SECONDS", 0.01)
    holder = DownThenUp()
    watcher = threading.Thread(target=engine.watch, args=(weakref.ref(holder),), daemon=True)
    watcher.start()
    deadline = time.monotonic() + 5
    while DownThenUp.checks < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert DownThenUp.checks >= 5 and watcher.is_alive()  # past three failed checks, still checking
    del holder
    watcher.join(timeout=5)
    assert not watcher.is_alive()
