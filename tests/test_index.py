"""The on-disk index: atomic builds, staleness, incremental rebuilds, damage reported clearly."""

import json

import numpy as np
import pytest

from qa.index import (POINTER, STORED_DTYPES, VECTOR_FILES, IndexUnavailable, _batches, build, chunking_params,
                      embedded_sentence_spans, embedded_text, live_build, load, stale_reasons)

from conftest import FakeEmbedder


class CountingEmbedder(FakeEmbedder):
    def __init__(self) -> None:
        self.texts = 0

    def encode(self, texts, batch_size: int = 32):
        self.texts += len(texts)
        return super().encode(texts, batch_size)


class InContextEmbedder(FakeEmbedder):
    """A span "read in context": the fake vector of the span's words plus its whole text's."""

    def encode_in_context(self, texts, spans):
        return self.encode(texts), [self.encode([f"{t[a:b]} {t}" for a, b in s]) for t, s in zip(texts, spans)]

    def token_counts(self, texts):
        return [len(t.split()) for t in texts]


def fresh(index, corpus, embedder):
    return stale_reasons(load(index).manifest, corpus, embedder.model_id, embedder.model_version)


def test_build_writes_a_complete_live_build(tiny_corpus, tiny_index, fake_embedder):
    loaded = load(tiny_index)
    assert set(loaded.documents) == {"rivers", "mountains"}
    manifest = loaded.manifest
    assert manifest["model"] == {"id": fake_embedder.model_id, "version": fake_embedder.model_version}
    assert manifest["chunks"] == len(loaded.chunks) == loaded.faiss_index.ntotal
    assert manifest["chunking"] == chunking_params()
    assert set(manifest["files"]) == {"rivers.txt", "mountains.md"}
    assert str(tiny_corpus.parent) not in json.dumps(manifest)  # no absolute paths
    for c in loaded.chunks:
        assert loaded.documents[c.document].text[c.start:c.end] == c.text
    assert fresh(tiny_index, tiny_corpus, fake_embedder) == []


def test_interrupted_build_leaves_previous_index_live(tiny_corpus, tiny_index, fake_embedder):
    before = live_build(tiny_index)
    (tiny_corpus / "rivers.txt").write_text("Rivers\n\nA changed text about rivers.\n", encoding="utf-8")

    def interrupt(staging):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(tiny_corpus, tiny_index, fake_embedder, extras=interrupt)
    assert live_build(tiny_index) == before
    assert load(tiny_index).documents["rivers"].title == "A Small Report on Rivers"
    assert not list((tiny_index / "builds").glob(".staging-*"))


def test_staleness_names_what_changed(tiny_corpus, tiny_index, fake_embedder):
    (tiny_corpus / "rivers.txt").write_text("Rivers\n\nChanged.\n", encoding="utf-8")
    (tiny_corpus / "new.md").write_text("# New\n\nNew text.\n", encoding="utf-8")
    (tiny_corpus / "mountains.md").unlink()
    reasons = fresh(tiny_index, tiny_corpus, fake_embedder)
    assert reasons == ["new file new.md", "file removed: mountains.md", "file changed: rivers.txt"]
    other = stale_reasons(load(tiny_index).manifest, tiny_corpus, "other/model", "x==1")
    assert other[0].startswith("built with fake/hashed-stems")


def test_incremental_rebuild_embeds_only_changed_documents(tiny_corpus, tiny_index):
    embedder = CountingEmbedder()
    report = build(tiny_corpus, tiny_index, embedder)
    assert report.unchanged == ["mountains", "rivers"] and embedder.texts == 0
    (tiny_corpus / "rivers.txt").write_text("Rivers\n\nOne sentence here. Another one.\n", encoding="utf-8")
    (tiny_corpus / "mountains.md").unlink()
    (tiny_corpus / "lakes.md").write_text("# Lakes\n\n## Big\n\nLakes are large.\n", encoding="utf-8")
    report = build(tiny_corpus, tiny_index, embedder)
    assert (report.added, report.changed, report.removed, report.unchanged) == (["lakes"], ["rivers"],
                                                                                 ["mountains"], [])
    assert embedder.texts == 2 + 3  # two passages, three sentences
    incremental = load(tiny_index)
    assert {c.document for c in incremental.chunks} == {"lakes", "rivers"}
    scratch = tiny_index.parent / "from-scratch"
    build(tiny_corpus, scratch, FakeEmbedder())
    assert [c.to_record() for c in load(scratch).chunks] == [c.to_record() for c in incremental.chunks]


def test_highlight_vectors_are_sentences_read_in_context_and_survive_an_incremental_build(tiny_corpus, tmp_path):
    embedder = InContextEmbedder()
    build(tiny_corpus, tmp_path / "index", embedder)
    index = load(tmp_path / "index")
    for i, chunk in enumerate(index.chunks):
        text = embedded_text(chunk)
        spans = embedded_sentence_spans(chunk)
        assert [text[a:b] for a, b in spans] == chunk.sentence_texts()
        rows = slice(index.sentence_offsets[i], index.sentence_offsets[i + 1])
        np.testing.assert_allclose(index.highlight_vectors[rows],
                                   embedder.encode([f"{text[a:b]} {text}" for a, b in spans]), atol=1e-6)
    assert not np.allclose(index.highlight_vectors, index.sentence_vectors)

    (tiny_corpus / "rivers.txt").write_text("Rivers\n\nOne sentence here. Another one.\n", encoding="utf-8")
    build(tiny_corpus, tmp_path / "index", embedder)
    build(tiny_corpus, tmp_path / "scratch", embedder)
    incremental, scratch = load(tmp_path / "index"), load(tmp_path / "scratch")
    for name in ("vectors", "sentence_vectors", "highlight_vectors"):
        np.testing.assert_array_equal(getattr(incremental, name), getattr(scratch, name))


def test_batches_group_texts_by_the_tokens_the_encoder_reads(fake_embedder):
    """Texts whose lengths in characters and in tokens disagree are grouped by tokens where the encoder counts
    them, each batch within the budget of padded tokens (a batch is padded to its longest text)."""
    texts = ["a b c d e f", "abcdefghijklmnopqrstuvwxyz", "a b", "abcdefghijklmnopqrstuvwxyz0123 x", "a b c d",
             "a b c d e f g h i"]

    def batches(embedder):
        return list(_batches(embedder, texts, lambda items, total, label: items, "test", budget=4))

    assert batches(InContextEmbedder()) == [[1, 2], [3], [4], [0], [5]]  # 1, 2, 2, 4, 6, 9 words
    assert batches(fake_embedder) == [[2, 4, 0, 5, 1, 3]]  # no token counts: by characters, 32 a batch


def test_without_an_in_context_reading_highlight_vectors_are_the_sentence_vectors(tiny_index):
    index = load(tiny_index)
    assert index.highlight_vectors.dtype == np.float32 and index.sentence_vectors.dtype == np.float16
    np.testing.assert_allclose(index.highlight_vectors, index.sentence_vectors, atol=1e-3)  # one in half precision


def test_load_maps_the_vectors_read_only_from_their_files(tiny_index):
    """Mapped, not read: every process that opens the build shares the same pages of the page cache."""
    index = load(tiny_index)
    arrays = (index.vectors, index.sentence_vectors, index.highlight_vectors)
    for name, array, dtype in zip(VECTOR_FILES, arrays, STORED_DTYPES):
        assert isinstance(array.base, np.memmap) and array.base.filename == index.path / name
        assert array.dtype == dtype
        assert not array.flags.writeable
    np.testing.assert_array_equal(index.faiss_index.reconstruct_n(0, index.faiss_index.ntotal), index.vectors)


def test_old_builds_are_pruned(tiny_corpus, tiny_index, fake_embedder):
    for _ in range(3):
        build(tiny_corpus, tiny_index, fake_embedder)
    assert len([p for p in (tiny_index / "builds").iterdir()]) == 2


@pytest.mark.parametrize("damage", ["pointer", "truncate", "manifest", "incomplete manifest"])
def test_damaged_index_is_unavailable_with_a_clear_message(tiny_index, damage):
    build_dir = live_build(tiny_index)
    if damage == "pointer":
        (tiny_index / POINTER).write_text("no-such-build\n")
    elif damage == "truncate":
        data = (build_dir / "vectors.npy").read_bytes()
        (build_dir / "vectors.npy").write_bytes(data[: len(data) // 2])
    elif damage == "manifest":
        (build_dir / "manifest.json").write_text("{not json")
    else:
        manifest = json.loads((build_dir / "manifest.json").read_text())
        del manifest["chunks"]
        (build_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexUnavailable, match="qa build"):
        load(tiny_index)


def test_missing_index_is_unavailable(tmp_path):
    with pytest.raises(IndexUnavailable, match="no index .* run `qa build`"):
        load(tmp_path / "nothing")
