"""The torch-free query encoder: a build's ONNX export of the model, run with onnxruntime and `tokenizers`.

`OnnxEmbedder` tokenizes with `tokenizers`, runs the graph with onnxruntime and does the mean pooling and L2
normalisation of sentence-transformers in numpy; it embeds both the index (on every core) and the queries (one thread
per worker). The export itself is made at build time by `onnx_export` and carried from build to build by
`build_encoder`; the names below are the layout of the export folder that all three share.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

EXPORT_FOLDER = "onnx"
MODEL_FILE = "model.onnx"
MODEL_DATA_FILE = "model.onnx.data"  # the exact graph's weights (`onnx_export.weights_apart`), mapped by onnxruntime
INT8_FILE = "model-int8.onnx"  # the same graph, weights quantised to 8 bits: the `int8` query encoder
QUERY_ENCODERS = ("exact", "int8")
EXPORT_FORMAT = 3  # 2: with INT8_FILE; 3: the weights in MODEL_DATA_FILE
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def has_export(build: Path) -> bool:
    folder = build / EXPORT_FOLDER
    return all((folder / name).is_file() for name in (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE))


class OnnxEmbedder:
    """The exported encoder of a build: same vectors as sentence-transformers (cosine ≥ 0.9999), without torch.

    Parameters
    ----------
    build
        A build folder holding an ONNX export (`has_export(build)`).
    threads
        onnxruntime intra-op threads (the `onnx_threads` setting). One per worker process is fastest under
        concurrent load, where the workers already keep every core busy.
    encoder
        `exact` or `int8` (the `query_encoder` setting; see `onnx_export.quantize`). A build without the int8
        file uses the exact encoder, with a warning.
    """

    def __init__(self, build: Path, threads: int = 1, encoder: str = "exact") -> None:
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
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle threads wait without spinning: on a busy machine spinning threads took CPU from the working one
        # (embedding the bundled document with 2 threads: 6.4 s spinning, 5.2 s not).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.encoder = encoder
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

    def encode_in_context(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
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
            inside = real & (offsets[:, 0] >= starts[:, None]) & (offsets[:, 1] <= ends[:, None])
            in_context.append(span_means(hidden[row], inside, vectors[row]))
        return vectors, in_context

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """The number of tokens the encoder reads of each text (after truncation, without padding)."""
        return [sum(encoding.attention_mask) for encoding in self.tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [self._encode_batch(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def mean_pool_normalize(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors under the attention mask, scaled to unit length (sentence-transformers' pooling)."""
    weights = mask.astype(np.float32)[:, :, None]
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(pooled / norms, dtype=np.float32)


def span_means(states: np.ndarray, inside: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """The normalised mean of one text's token `states` (tokens x dim) over each span's tokens (`inside`: spans x
    tokens, boolean), as one matrix product; a span with no token gets the `whole` text's vector."""
    weights = inside.astype(np.float32)
    sums = weights @ states
    counts = weights.sum(axis=1, keepdims=True)
    norms = np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return np.where(counts > 0, sums / norms, whole[None, :]).astype(np.float32)
