"""Opening the live index for searching, and swapping in a new build while serving.

The CLI opens a `Searcher` once; the web app keeps an `IndexHolder` that notices a new build (the `CURRENT`
pointer changed) and loads it in the background, answering from the old one until the new one is ready.
"""

from __future__ import annotations

import logging
import threading
import time
from importlib.metadata import PackageNotFoundError
from pathlib import Path

from .confidence import Calibration, load_calibration
from .embedding import DIMENSION, MODEL_ID, Embedder, SentenceTransformerEmbedder, model_version
from .index import Index, IndexUnavailable, load, pointer_stamp, stale_reasons
from .search import Searcher
from .tuning import load_weights

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 1.0


def installed_model_version(index: Index) -> str:
    """The installed model package's version; in a torch-free install (no model package) the build's own export
    is the encoder, so the build's recorded version is the one in use."""
    try:
        return model_version()
    except PackageNotFoundError:
        return index.manifest["model"]["version"]


def staleness(index: Index, corpus: Path) -> list[str]:
    """Why the index does not match the corpus, the model or the chunking; empty when it is fresh."""
    return stale_reasons(index.manifest, corpus, MODEL_ID, installed_model_version(index))


def check_fresh(index: Index, corpus: Path) -> None:
    """Raise IndexUnavailable naming `qa build` when the index does not match the corpus, model or chunking."""
    reasons = staleness(index, corpus)
    if reasons:
        raise IndexUnavailable(f"index is stale ({'; '.join(reasons)}); run `qa build`")


def load_index(index_dir: Path) -> Index:
    """`index.load`, with damage it does not name (a manifest missing keys, say) also reported as IndexUnavailable."""
    try:
        return load(index_dir)
    except IndexUnavailable:
        raise
    except Exception as exc:  # a damaged build must never surface as a traceback or a 500
        raise IndexUnavailable(f"index in {index_dir} is damaged ({type(exc).__name__}); run `qa build`") from exc


def check_model(index: Index, model_id: str, dimension: int) -> None:
    """Refuse a build whose vectors come from a model other than the query encoder's: its answers would be noise."""
    model = index.manifest.get("model")
    built_with = model.get("id") if isinstance(model, dict) else None
    if built_with != model_id or index.manifest.get("dimension") != dimension:
        raise IndexUnavailable(f"index at {index.path} was built with {built_with!r}, not {model_id}; run `qa build`")


def load_embedder(index: Index) -> Embedder:
    """The query encoder for this build: its ONNX export when there is one (no torch), else sentence-transformers."""
    from .onnx_embedding import OnnxEmbedder, has_export

    if has_export(index.path):
        return OnnxEmbedder(index.path)
    return SentenceTransformerEmbedder()


def open_searcher(index_dir: Path, corpus: Path | None = None, threshold: float | None = None,
                  embedder: Embedder | None = None, calibration: Calibration | None = None) -> Searcher:
    """Load the live index (checked against `corpus` when given) and its query encoder; the confidence uses
    `calibration`, else the one `qa tune` saved in `index_dir`, else the shipped one."""
    index = load_index(index_dir)
    if corpus is not None:
        check_fresh(index, corpus)
    return Searcher(index, embedder or load_embedder(index), threshold, weights=load_weights(index_dir),
                    calibration=calibration or load_calibration(index_dir))


class IndexHolder:
    """The searcher a server answers with; reloads in the background when a new build goes live. Thread-safe.

    Requests never wait for a reload: they keep the searcher they started with, and the swap is one assignment.
    A new build that cannot be used (damaged, another model) is refused and the previous one kept.
    """

    def __init__(self, index_dir: Path, threshold: float | None = None, embedder: Embedder | None = None) -> None:
        self.index_dir = index_dir
        self.threshold = threshold
        self.fixed_embedder = embedder
        self.searcher: Searcher | None = None
        self.error: str | None = None
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._loading = threading.Lock()
        self.refresh(wait=True)

    def refresh(self, wait: bool = False) -> None:
        """Load the live build if the pointer changed (checked at most once a second unless `wait`).

        `wait` loads in this thread (start-up); otherwise a background thread loads, and a check that finds a
        load already running returns at once.
        """
        now = time.monotonic()
        if not wait and now - self._checked < RELOAD_CHECK_SECONDS:
            return
        self._checked = now
        if not wait and pointer_stamp(self.index_dir) == self._stamp:
            return
        if not self._loading.acquire(blocking=wait):
            return
        if wait:
            self._load()
        else:
            threading.Thread(target=self._load, name="index-reload", daemon=True).start()

    def _load(self) -> None:
        """Load the live build and swap it in; runs holding `_loading`, which it releases."""
        try:
            stamp = pointer_stamp(self.index_dir)  # read before the build, so a newer pointer is noticed again
            try:
                searcher = self._open()
            except IndexUnavailable as exc:
                self._refuse(str(exc))
            except Exception as exc:  # an encoder that will not load, say: keep serving, say why in the log
                log.exception("index reload failed")
                self._refuse(f"index in {self.index_dir} could not be loaded ({type(exc).__name__}); run `qa build`")
            else:
                self.searcher, self.error = searcher, None
                log.info("serving index build %s (%d chunks)", searcher.index.build_id, len(searcher.index.chunks))
            self._stamp = stamp
        finally:
            self._loading.release()

    def _open(self) -> Searcher:
        index = load_index(self.index_dir)
        fixed = self.fixed_embedder
        check_model(index, *((fixed.model_id, fixed.dimension) if fixed else (MODEL_ID, DIMENSION)))
        return Searcher(index, self._embedder_for(index), self.threshold, weights=load_weights(self.index_dir),
                        calibration=load_calibration(self.index_dir))

    def _refuse(self, reason: str) -> None:
        self.error = reason
        if self.searcher is None:
            log.error("%s", reason)
        else:
            log.error("kept build %s: the new one is unusable: %s", self.searcher.index.build_id, reason)

    def _embedder_for(self, index: Index) -> Embedder:
        if self.fixed_embedder is not None:
            return self.fixed_embedder
        old = self.searcher
        if old is not None and old.index.manifest["model"] == index.manifest["model"]:
            return old.embedder  # same model: keep the loaded encoder, do not pay for a second one
        return load_embedder(index)

    def get(self) -> Searcher:
        """The current searcher; IndexUnavailable when no usable index has loaded."""
        self.refresh()
        searcher = self.searcher
        if searcher is None:
            raise IndexUnavailable(self.error or "no index loaded; run `qa build`")
        return searcher
