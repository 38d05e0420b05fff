"""The torch-free query path: the embedder exported to ONNX at build time, run with onnxruntime.

(Placeholder for the export; until a build carries `onnx/`, searching falls back to sentence-transformers.)
"""

from __future__ import annotations

from pathlib import Path

EXPORT_FOLDER = "onnx"


def has_export(build: Path) -> bool:
    return (build / EXPORT_FOLDER / "model.onnx").is_file()


class OnnxEmbedder:  # replaced by the real implementation in the performance work
    def __init__(self, build: Path) -> None:
        raise NotImplementedError


def export_extras(embedder):  # replaced by the real export in the performance work
    return None
