"""Exporting the model to ONNX, at build time: the only code that imports torch, and only when no export is reused.

The export (token ids in, `last_hidden_state` out) goes into a build's `onnx/` folder beside the model's own
`tokenizer.json` and a `config.json` of its pooling, with an int8-quantised copy of the graph; `onnx_embedding`
runs it. Reusing an export from one build to the next is `build_encoder`'s job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import warnings
from pathlib import Path

from .embedding import DIMENSION, MODEL_ID, model_path, model_version
from .onnx_embedding import (
    CONFIG_FILE,
    EXPORT_FOLDER,
    EXPORT_FORMAT,
    INPUTS,
    INT8_FILE,
    MODEL_DATA_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
)

log = logging.getLogger(__name__)

OPSET = 17


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

    transformers_logging.disable_progress_bar()
    source = Path(model_path())
    max_length = int(json.loads((source / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"])
    # eager attention: 8% less CPU per query in onnxruntime than the SDPA graph
    transformer = AutoModel.from_pretrained(str(source), attn_implementation="eager", local_files_only=True).eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

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
            LastHiddenState(),
            (ids, mask, torch.zeros_like(ids)),
            str(folder / MODEL_FILE),
            input_names=list(INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes={**{name: dynamic for name in INPUTS}, "last_hidden_state": dynamic},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    weights_apart(folder / MODEL_FILE)
    shutil.copyfile(source / TOKENIZER_FILE, folder / TOKENIZER_FILE)
    quantize(folder)
    config = {
        "model_id": MODEL_ID,
        "model_version": model_version(),
        "dimension": DIMENSION,
        "max_length": max_length,
        "pooling": "mean",
        "normalize": True,
        "inputs": list(INPUTS),
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")
    return {
        "file": f"{EXPORT_FOLDER}/{MODEL_FILE}",
        "sha256": _sha256(folder / MODEL_FILE),
        "opset": OPSET,
        "max_length": max_length,
        "format": EXPORT_FORMAT,
        "int8": f"{EXPORT_FOLDER}/{INT8_FILE}" if (folder / INT8_FILE).is_file() else None,
    }


def weights_apart(model: Path) -> None:
    """Move the graph's weights out of `model` into `MODEL_DATA_FILE` beside it (ONNX external data).

    onnxruntime maps an external data file instead of copying the weights into each session: the weights it uses
    as they are (the word embeddings, 47 MB of the 90) stay in the page cache, shared by every server worker.
    Measured with one query thread: a session's private memory 50 MB instead of 118 MB, the same vectors to the
    bit and the same speed (docs/benchmark.md).
    """
    import onnx

    graph = onnx.load(str(model))
    onnx.save_model(graph, str(model), save_as_external_data=True, location=MODEL_DATA_FILE, size_threshold=1024)
    (model.parent / MODEL_DATA_FILE).chmod(model.stat().st_mode & 0o777)  # onnx writes it owner-only


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
