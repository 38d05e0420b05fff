"""The torch-free query path: the ONNX export matches sentence-transformers, and serving never imports torch."""

import json
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from qa import build_encoder as encoder_lifecycle
from qa import onnx_export
from qa.index import build, embedded_text, live_build, load
from qa.build_encoder import build_encoder
from qa.onnx_embedding import OnnxEmbedder, has_export, mean_pool_normalize

from conftest import DEV_QUESTIONS, S300

MIN_COSINE = 0.9999


def dev_questions() -> list[str]:
    return [json.loads(line)["question"] for line in DEV_QUESTIONS.read_text(encoding="utf-8").splitlines()]


def test_mean_pool_normalize_ignores_padding_and_gives_unit_vectors():
    hidden = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]],
                       [[0.0, 2.0], [0.0, 4.0], [0.0, 6.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(mean_pool_normalize(hidden, mask), [[1.0, 0.0], [0.0, 1.0]])


@pytest.fixture(scope="module")
def onnx_embedder(real_paths) -> OnnxEmbedder:
    _, index = real_paths
    return OnnxEmbedder(live_build(index))


@pytest.mark.model
def test_build_records_the_export_without_absolute_paths(real_paths):
    corpus, index = real_paths
    build_folder = live_build(index)
    assert has_export(build_folder)
    entry = load(index).manifest["onnx"]
    assert entry["file"] == "onnx/model.onnx"
    assert entry["sha256"] == onnx_export._sha256(build_folder / entry["file"])
    for name in ("manifest.json", "onnx/config.json"):
        text = (build_folder / name).read_text(encoding="utf-8")
        assert str(index.parent) not in text and "site-packages" not in text


@pytest.mark.model
def test_onnx_vectors_match_sentence_transformers(real_paths, real_embedder, onnx_embedder):
    """Every passage as embedded at build time (batched) and every dev question (one at a time, as served)."""
    _, index = real_paths
    passages = [embedded_text(c) for c in load(index).chunks]
    questions = dev_questions()
    assert onnx_embedder.model_id == real_embedder.model_id
    assert onnx_embedder.model_version == real_embedder.model_version
    assert onnx_embedder.dimension == real_embedder.dimension

    reference = real_embedder.encode(passages)
    ours = onnx_embedder.encode(passages)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    assert (ours * reference).sum(axis=1).min() >= MIN_COSINE

    reference = real_embedder.encode(questions)
    ours = np.stack([onnx_embedder.encode([q])[0] for q in questions])
    assert (ours * reference).sum(axis=1).min() >= MIN_COSINE
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.model
def test_a_batch_of_different_lengths_gives_the_vectors_of_one_at_a_time(real_embedder, onnx_embedder):
    long_text = " ".join(["Russia and Iran signed a treaty on the Caspian Sea."] * 60)  # past 256 word pieces
    texts = ["Iran", S300, "Why did relations between Moscow and Tehran cool in the 1990s?", long_text, ""]
    batched = onnx_embedder.encode(texts, batch_size=3)
    single = np.stack([onnx_embedder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert (single * real_embedder.encode(texts)).sum(axis=1).min() >= MIN_COSINE  # truncated alike
    assert onnx_embedder.encode([]).shape == (0, onnx_embedder.dimension)


@pytest.mark.model
def test_spans_read_in_context_match_sentence_transformers_token_states(real_embedder, onnx_embedder):
    """Reference: sentence-transformers' own token states and the tokenizer's offsets, pooled by hand."""
    text = "Arms Sales. Russia agreed to sell the S-300 to Iran. It delivered them in 2016, after the nuclear deal."
    sentences = ["Russia agreed to sell the S-300 to Iran.", "It delivered them in 2016, after the nuclear deal."]
    spans = [(text.index(s), text.index(s) + len(s)) for s in sentences]
    long_text = " ".join(["Russia and Iran signed a treaty on the Caspian Sea."] * 60)  # past 256 word pieces
    vectors, (in_context, none, cut) = onnx_embedder.encode_in_context(
        [text, "Iran", long_text], [spans, [], [(0, 51), (len(long_text) - 51, len(long_text))]])

    np.testing.assert_allclose(vectors, onnx_embedder.encode([text, "Iran", long_text]), atol=1e-5)
    states = real_embedder.model.encode([text], output_value="token_embeddings", convert_to_numpy=False)[0].numpy()
    offsets = real_embedder.model.tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    for (start, end), ours in zip(spans, in_context):
        inside = [i for i, (a, b) in enumerate(offsets) if b > a and a >= start and b <= end]
        reference = states[inside].mean(axis=0)
        assert float(ours @ reference) / np.linalg.norm(reference) >= MIN_COSINE
    assert float(in_context[0] @ in_context[1]) < 0.99  # two sentences, two readings
    assert none.shape == (0, onnx_embedder.dimension)
    assert float(cut[0] @ vectors[2]) < 0.99 and float(cut[1] @ vectors[2]) >= MIN_COSINE  # truncated: the text's
    # what the build groups batches by: the word pieces read, [CLS] and [SEP] included, truncation applied
    assert onnx_embedder.token_counts(["Iran", "Arms Sales.", long_text]) == [3, 5, 256]


@pytest.mark.model
def test_the_export_carries_an_int8_encoder_and_a_build_without_it_falls_back(real_paths, tmp_path, caplog):
    _, index = real_paths
    build_folder = live_build(index)
    assert load(index).manifest["onnx"]["int8"] == "onnx/model-int8.onnx"
    int8 = build_folder / "onnx" / "model-int8.onnx"
    exact = sum((build_folder / "onnx" / name).stat().st_size for name in ("model.onnx", "model.onnx.data"))
    assert int8.stat().st_size < exact / 3
    with pytest.raises(ValueError, match="exact, int8"):
        OnnxEmbedder(build_folder, encoder="fp16")

    old = tmp_path / "old-build"
    shutil.copytree(build_folder, old)
    (old / "onnx" / "model-int8.onnx").unlink()
    with caplog.at_level(logging.WARNING, logger="qa.onnx_embedding"):
        assert OnnxEmbedder(old, encoder="int8").encoder == "exact"
    assert "no int8 query encoder" in caplog.text


@pytest.mark.model
def test_the_query_path_imports_no_torch(real_paths):
    corpus, index = real_paths
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from qa.engine import open_searcher

        searcher = open_searcher(Path({str(index)!r}), Path({str(corpus)!r}))
        response = searcher.search({S300!r})
        assert response["results"], response
        heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules)
        print(type(searcher.embedder).__name__, heavy)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "OnnxEmbedder []"


@pytest.mark.model
def test_a_failed_export_leaves_a_usable_build_without_it(tiny_corpus, tmp_path, monkeypatch, caplog):
    def no_torch(folder):
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"partial")
        raise ImportError("No module named 'torch'")

    monkeypatch.setattr(encoder_lifecycle, "export", no_torch)
    index = tmp_path / "index"
    with caplog.at_level(logging.WARNING, logger="qa.build_encoder"):
        with build_encoder(index) as (embedder, extras):
            assert type(embedder).__name__ == "SentenceTransformerEmbedder" and extras is None
            build(tiny_corpus, index, embedder, extras=extras)
    assert "ONNX export failed" in caplog.text
    assert not (live_build(index) / "onnx").exists()
    assert "onnx" not in load(index).manifest
    assert [p.name for p in (index / "builds").iterdir()] == [live_build(index).name]  # no scratch export left


@pytest.mark.model
def test_a_rebuild_reuses_the_export_and_never_imports_torch(real_paths, tmp_path):
    """A changed document is re-embedded by the live build's export: no torch, and the same file (a hard link)."""
    corpus, index = real_paths
    shutil.copytree(corpus, tmp_path / "corpus")
    shutil.copytree(index, tmp_path / "index")
    before = live_build(tmp_path / "index")
    document = next((tmp_path / "corpus").iterdir())
    document.write_text(document.read_text(encoding="utf-8") + "\n\nA closing paragraph on the weather.\n",
                        encoding="utf-8")
    script = textwrap.dedent(f"""
        import sys
        from qa.cli import run_build

        run_build({str(tmp_path / "corpus")!r}, {str(tmp_path / "index")!r})
        print(sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "changed 1" in done.stderr
    after = load(tmp_path / "index")
    assert after.path != before and after.manifest["onnx"] == load(index).manifest["onnx"]
    assert (after.path / "onnx" / "model.onnx").stat().st_ino == (before / "onnx" / "model.onnx").stat().st_ino
    assert "weather" in after.chunks[-1].text


@pytest.mark.model
def test_qa_build_adds_a_missing_export_reusing_the_vectors(tiny_corpus, tmp_path, real_embedder):
    from qa.cli import run_build

    index = tmp_path / "index"
    build(tiny_corpus, index, real_embedder)  # fresh, but without the export (as before it existed)
    before = load(index)
    assert not has_export(before.path)
    run_build(str(tiny_corpus), str(index))
    after = load(index)
    assert after.build_id != before.build_id and has_export(after.path)
    np.testing.assert_array_equal(after.vectors, before.vectors)
    run_build(str(tiny_corpus), str(index))
    assert load(index).build_id == after.build_id  # now up to date: nothing to do


@pytest.mark.model
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps")
def test_the_exact_encoder_maps_its_weights_from_the_export(onnx_embedder):
    """The weights are in their own file, which onnxruntime maps instead of copying: server workers share it."""
    folder = onnx_embedder.build / "onnx"
    assert (folder / "model.onnx.data").stat().st_size > 80e6 > (folder / "model.onnx").stat().st_size * 100
    assert (folder / "model.onnx.data").stat().st_mode & 0o444 == 0o444
    assert str(folder / "model.onnx.data") in Path("/proc/self/maps").read_text(encoding="utf-8")
