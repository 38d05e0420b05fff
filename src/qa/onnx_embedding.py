"""The torch-free encoder: the model exported to ONNX at build time, run with onnxruntime and `tokenizers`.

`qa build` exports the model's transformer (token ids in, `last_hidden_state` out) into the build's `onnx/` folder
beside the model's own `tokenizer.json`, once: later builds reuse it. `OnnxEmbedder` tokenizes with `tokenizers`, runs
the graph with onnxruntime and does the mean pooling and L2 normalisation of sentence-transformers in numpy; it
embeds both the index (on every core) and the queries (one thread per worker). Nothing here imports torch except
`export`, which runs only when no reusable export exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager, suppress
from importlib.metadata import PackageNotFoundError
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .embedding import DIMENSION, MODEL_ID, Embedder, SentenceTransformerEmbedder, model_path, model_version, offline
from .index import BUILDS, IndexUnavailable, live_build, read_manifest
from .settings import BY_NAME

log = logging.getLogger(__name__)

EXPORT_FOLDER = "onnx"
MODEL_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"  # the same graph, weights quantised to 8 bits: the `int8` query encoder
QUERY_ENCODERS = ("exact", "int8")
EXPORT_FORMAT = 2  # 2: with INT8_FILE
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def has_export(build: Path) -> bool:
    folder = build / EXPORT_FOLDER
    return all((folder / name).is_file() for name in (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE))


# ---------------------------------------------------------------- export (build time: needs torch and onnx)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export(folder: Path) -> dict:
    """Write the installed model's transformer as ONNX, its tokenizer and the pooling settings into `folder`.

    Returns the build manifest's entry for it. The graph takes `INPUTS` (int64, batch x sequence, both axes dynamic)
    and returns `last_hidden_state`; pooling stays out of the graph so that the one tokenizer call and one numpy
    mean are all that runs around it. The model is loaded with `transformers` alone: importing sentence-transformers
    would add seconds to every build, and the tests hold the vectors to sentence-transformers' own.
    """
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    offline()
    transformers_logging.disable_progress_bar()
    source = Path(model_path())
    max_length = int(json.loads((source / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"])
    # eager attention: 8% less CPU per query in onnxruntime than the SDPA graph
    transformer = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                    token_type_ids=token_type_ids).last_hidden_state

    folder.mkdir(parents=True, exist_ok=True)
    ids = torch.full((2, 8), 1000, dtype=torch.int64)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # a padded row, so that the traced graph keeps the attention-mask path
    dynamic = {0: "batch", 1: "sequence"}
    with torch.inference_mode(), warnings.catch_warnings():
        # The tracer warns about Python branches on shapes (mask padding, causal flags) that are constant for
        # an encoder; the tests check the exported graph against sentence-transformers on real inputs.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHiddenState(), (ids, mask, torch.zeros_like(ids)), str(folder / MODEL_FILE),
            input_names=list(INPUTS), output_names=["last_hidden_state"],
            dynamic_axes={**{name: dynamic for name in INPUTS}, "last_hidden_state": dynamic},
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )
    shutil.copyfile(source / TOKENIZER_FILE, folder / TOKENIZER_FILE)
    quantize(folder)
    config = {"model_id": MODEL_ID, "model_version": model_version(), "dimension": DIMENSION,
              "max_length": max_length, "pooling": "mean", "normalize": True, "inputs": list(INPUTS)}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")
    return {"file": f"{EXPORT_FOLDER}/{MODEL_FILE}", "sha256": _sha256(folder / MODEL_FILE), "opset": OPSET,
            "max_length": max_length, "format": EXPORT_FORMAT,
            "int8": f"{EXPORT_FOLDER}/{INT8_FILE}" if (folder / INT8_FILE).is_file() else None}


def quantize(folder: Path) -> None:
    """Write `INT8_FILE` beside the export: weights quantised to 8 bits per output channel, activations at run time.

    A question's pass is bound by reading the weights from memory (one token costs half of a ten-token question), so
    weights a quarter the size make it about 2.5x faster. The vectors are close to the exact ones but not identical,
    hence an opt-in (the `query_encoder` setting). On failure the build goes on without it, with a warning.
    """
    problem = None
    logging.disable(logging.WARNING)  # the quantiser advises "pre-processing" on the root logger at every call
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(folder / MODEL_FILE, folder / INT8_FILE, weight_type=QuantType.QInt8, per_channel=True)
    except Exception as exc:  # noqa: BLE001 - the exact encoder is complete without it
        problem = f"{type(exc).__name__}: {exc}"
    finally:
        logging.disable(logging.NOTSET)
    if problem:
        (folder / INT8_FILE).unlink(missing_ok=True)
        log.warning("could not quantise the query encoder (%s); `int8` will use the exact one", problem)


def reusable_export(index_dir: Path) -> tuple[Path, dict] | None:
    """The live build's export folder and manifest entry, if it was made from the installed model by this exporter.

    Where the model package is not installed (the torch-free runtime image), the export is the model.
    """
    build = live_build(index_dir)
    if build is None or not has_export(build):
        return None
    try:
        entry = read_manifest(build).get("onnx")
        config = json.loads((build / EXPORT_FOLDER / CONFIG_FILE).read_text(encoding="utf-8"))
    except (IndexUnavailable, OSError, ValueError):
        return None
    try:
        installed = model_version()
    except PackageNotFoundError:
        installed = config.get("model_version")
    if not isinstance(entry, dict) or entry.get("format") != EXPORT_FORMAT or config.get("model_version") != installed:
        return None
    return build / EXPORT_FOLDER, entry


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link every file of `source` into `target` (a copy where links are not possible): builds share the export."""
    target.mkdir(parents=True)
    for path in source.iterdir():
        try:
            os.link(path, target / path.name)
        except OSError:
            shutil.copyfile(path, target / path.name)


@contextmanager
def build_encoder(index_dir: Path) -> Iterator[tuple[Embedder, Callable[[Path], dict] | None]]:
    """What `qa build` embeds with, and the `extras` callback of `index.build` that puts the export into the build.

    The live build's export is reused when it matches the installed model, so a rebuild never imports torch; else
    the model is exported afresh (torch, at build time only) into a scratch folder beside the builds. Either way the
    index's vectors come from the same exact graph that serves the queries, run on every core. If the export
    fails, the failure is logged as a warning, sentence-transformers embeds, and the build has no export: the index
    is still good and queries fall back to sentence-transformers.
    """
    builds = index_dir / BUILDS
    scratch: Path | None = None
    try:
        found = reusable_export(index_dir)
        if found is None:
            builds.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=".staging-export-", dir=builds))  # pruned if a crash leaves it
            began = time.perf_counter()
            try:
                found = scratch / EXPORT_FOLDER, export(scratch / EXPORT_FOLDER)
            except Exception as exc:  # noqa: BLE001 - any exporter failure must leave a usable build
                failure = f"{type(exc).__name__}: {exc}"
            else:
                log.info("exported the query encoder to ONNX in %.1f s", time.perf_counter() - began)
        if found is None:
            try:
                fallback = SentenceTransformerEmbedder()
            except ImportError as exc:  # a serving-only install: neither torch nor sentence-transformers
                raise ImportError(f"{index_dir} has no export of the model to reuse, and this install cannot make "
                                  f"one ({failure})") from exc
            log.warning("ONNX export failed (%s); sentence-transformers embeds, and queries will use it", failure)
            yield fallback, None
            return
        folder, entry = found

        def extras(staging: Path) -> dict:
            _link_tree(folder, staging / EXPORT_FOLDER)
            return {"onnx": entry}

        yield OnnxEmbedder(folder.parent, threads=len(os.sched_getaffinity(0)), encoder="exact"), extras
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
            with suppress(OSError):
                builds.rmdir()  # only if empty: this build failed and none came before it


# ---------------------------------------------------------------- serving (no torch)


class OnnxEmbedder:
    """The exported encoder of a build: same vectors as sentence-transformers (cosine ≥ 0.9999), without torch.

    Parameters
    ----------
    build
        A build folder holding an ONNX export (`has_export(build)`).
    threads
        onnxruntime intra-op threads; default `$QA_ONNX_THREADS`, else 1. One per worker process is fastest under
        concurrent load, where the workers already keep every core busy.
    encoder
        `exact` or `int8` (see `quantize`); default `$QA_QUERY_ENCODER`, else `exact`. A build without the int8
        file uses the exact encoder, with a warning.
    """

    def __init__(self, build: Path, threads: int | None = None, encoder: str | None = None) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self.build = build
        folder = build / EXPORT_FOLDER
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        self.model_id: str = config["model_id"]
        self.model_version: str = config["model_version"]
        self.dimension: int = config["dimension"]
        self.inputs: tuple[str, ...] = tuple(config["inputs"])

        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self.tokenizer.enable_truncation(max_length=config["max_length"])
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or BY_NAME["onnx_threads"].from_env()
        options.inter_op_num_threads = 1
        # Idle threads wait without spinning: on a busy machine spinning threads took CPU from the working one
        # (embedding the bundled document with 2 threads: 6.4 s spinning, 5.2 s not).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.encoder = encoder or BY_NAME["query_encoder"].from_env()
        if self.encoder not in QUERY_ENCODERS:
            raise ValueError(f"query encoder must be one of {', '.join(QUERY_ENCODERS)}, not {self.encoder!r}")
        if self.encoder == "int8" and not (folder / INT8_FILE).is_file():
            log.warning("%s has no int8 query encoder (built before it existed?): using the exact one", build)
            self.encoder = "exact"
        model = folder / (INT8_FILE if self.encoder == "int8" else MODEL_FILE)
        self.session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.encode(["warm-up"])  # the first run sets up kernels and buffers: pay for it here, not in a request

    def _run(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list]:
        """Token states (batch x tokens x dim), the attention mask and the tokenizer's encodings of `texts`."""
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self.session.run(None, {name: feeds[name] for name in self.inputs})
        return hidden, mask, encodings

    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        hidden, mask, _ = self._run(texts)
        return mean_pool_normalize(hidden, mask)

    def encode_in_context(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
                          ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The vectors of `texts` and, from the same pass, of each text's character `spans` (late chunking).

        A span's vector is the normalised mean of the states of the tokens inside it, so each span is read in the
        context of its whole text. A span that truncation cut off gets the whole text's vector.
        """
        hidden, mask, encodings = self._run(texts)
        vectors = mean_pool_normalize(hidden, mask)
        in_context = []
        for row, (encoding, text_spans) in enumerate(zip(encodings, spans)):
            offsets = np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2)
            real = (offsets[:, 1] > offsets[:, 0]) & (mask[row] == 1)  # not [CLS], [SEP] or padding
            starts, ends = np.array(text_spans, dtype=np.int64).reshape(-1, 2).T
            inside = (real & (offsets[:, 0] >= starts[:, None]) & (offsets[:, 1] <= ends[:, None])).astype(np.int64)
            pooled = mean_pool_normalize(np.broadcast_to(hidden[row], (len(text_spans),) + hidden[row].shape), inside)
            pooled[inside.sum(axis=1) == 0] = vectors[row]
            in_context.append(pooled)
        return vectors, in_context

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [self._encode_batch(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def mean_pool_normalize(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors under the attention mask, scaled to unit length (sentence-transformers' pooling)."""
    weights = mask.astype(np.float32)[:, :, None]
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(pooled / norms, dtype=np.float32)
