"""The torch-free query path: the embedder exported to ONNX at build time, run with onnxruntime and `tokenizers`.

`qa build` exports the transformer of the sentence-transformers model (token ids in, `last_hidden_state` out) into
the build's `onnx/` folder beside the model's own `tokenizer.json`; `OnnxEmbedder` then tokenizes with `tokenizers`,
runs the graph with onnxruntime and does the mean pooling and L2 normalisation of sentence-transformers in numpy.
Nothing here imports torch or sentence-transformers except `export`, which runs at build time only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .embedding import Embedder, SentenceTransformerEmbedder
from .settings import BY_NAME

log = logging.getLogger(__name__)

EXPORT_FOLDER = "onnx"
MODEL_FILE = "model.onnx"
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


def export(embedder: SentenceTransformerEmbedder, folder: Path) -> dict:
    """Write the transformer as ONNX, its tokenizer and the pooling settings into `folder`; return its manifest entry.

    The graph takes `INPUTS` (int64, batch x sequence, both axes dynamic) and returns `last_hidden_state`; pooling
    stays out of the graph so that the one tokenizer call and one numpy mean are all that runs around it.
    """
    import torch

    from .embedding import model_path

    transformer = embedder.model[0].auto_model.eval()
    max_length = int(embedder.model.max_seq_length)

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
    attention = transformer.config._attn_implementation
    transformer.set_attn_implementation("eager")  # 8% less CPU per query in onnxruntime than the SDPA graph
    try:
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
    finally:
        transformer.set_attn_implementation(attention)
    shutil.copyfile(Path(model_path()) / TOKENIZER_FILE, folder / TOKENIZER_FILE)
    config = {"model_id": embedder.model_id, "model_version": embedder.model_version,
              "dimension": embedder.dimension, "max_length": max_length, "pooling": "mean", "normalize": True,
              "inputs": list(INPUTS)}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")
    return {"file": f"{EXPORT_FOLDER}/{MODEL_FILE}", "sha256": _sha256(folder / MODEL_FILE), "opset": OPSET,
            "max_length": max_length}


def export_extras(embedder: Embedder) -> Callable[[Path], dict] | None:
    """The `extras` callback of `index.build` that adds the ONNX export to a build (None for other embedders).

    A failed export (torch or onnx missing, an exporter error) is logged as a warning and leaves the build without
    `onnx/`: the index is still good and queries fall back to sentence-transformers.
    """
    if not isinstance(embedder, SentenceTransformerEmbedder):
        return None

    def extras(staging: Path) -> dict:
        began = time.perf_counter()
        folder = staging / EXPORT_FOLDER
        try:
            entry = export(embedder, folder)
        except Exception as exc:  # noqa: BLE001 - any exporter failure must leave a usable build
            shutil.rmtree(folder, ignore_errors=True)
            log.warning("ONNX export failed (%s: %s); queries will use sentence-transformers", type(exc).__name__, exc)
            return {}
        log.info("exported the query encoder to ONNX in %.1f s", time.perf_counter() - began)
        return {"onnx": entry}

    return extras


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
    """

    def __init__(self, build: Path, threads: int | None = None) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

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
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(str(folder / MODEL_FILE), options,
                                                    providers=["CPUExecutionProvider"])
        self.encode(["warm-up"])  # the first run sets up kernels and buffers: pay for it here, not in a request

    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self.session.run(None, {name: feeds[name] for name in self.inputs})
        return mean_pool_normalize(hidden, mask)

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
