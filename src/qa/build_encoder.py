"""The encoder `qa build` embeds with, and the life cycle of the model's ONNX export from one build to the next.

The live build's export is reused when it was made from the installed model by this exporter (hard-linked into the
new build), so a rebuild never imports torch; otherwise the model is exported afresh into a scratch folder beside
the builds, and the scratch folder is removed when the build is done.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager, suppress
from importlib.metadata import PackageNotFoundError
from pathlib import Path
from typing import Callable, Iterator

from .embedding import Embedder, SentenceTransformerEmbedder, model_version
from .index import BUILDS, IndexUnavailable, live_build, read_manifest
from .onnx_embedding import CONFIG_FILE, EXPORT_FOLDER, EXPORT_FORMAT, OnnxEmbedder, has_export
from .onnx_export import export

log = logging.getLogger(__name__)


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
                raise ImportError(
                    f"{index_dir} has no export of the model to reuse, and this install cannot make one ({failure})"
                ) from exc
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
