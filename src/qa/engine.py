"""Opening the live index for searching, and swapping in a new build while serving.

The CLI opens a `Searcher` once; the web app keeps an `IndexHolder` that notices a new build (the `CURRENT`
pointer changed) and swaps it in without a restart, answering from the old one until the new one is loaded.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from .embedding import MODEL_ID, Embedder, SentenceTransformerEmbedder, model_version
from .index import Index, IndexUnavailable, load, pointer_stamp, stale_reasons
from .search import Searcher

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 1.0


def check_fresh(index: Index, corpus: Path) -> None:
    """Raise IndexUnavailable naming `qa build` when the index does not match the corpus, model or chunking."""
    reasons = stale_reasons(index.manifest, corpus, MODEL_ID, model_version())
    if reasons:
        raise IndexUnavailable(f"index is stale ({'; '.join(reasons)}); run `qa build`")


def load_embedder(index: Index) -> Embedder:
    """The query encoder for this build: its ONNX export when there is one (no torch), else sentence-transformers."""
    from .onnx_embedding import OnnxEmbedder, has_export

    if has_export(index.path):
        return OnnxEmbedder(index.path)
    return SentenceTransformerEmbedder()


def open_searcher(index_dir: Path, corpus: Path | None = None, threshold: float | None = None,
                  embedder: Embedder | None = None) -> Searcher:
    """Load the live index (checked against `corpus` when given) and its query encoder."""
    index = load(index_dir)
    if corpus is not None:
        check_fresh(index, corpus)
    return Searcher(index, embedder or load_embedder(index), threshold)


class IndexHolder:
    """The searcher a server answers with; reloads when a new build goes live. Thread-safe."""

    def __init__(self, index_dir: Path, threshold: float | None = None, embedder: Embedder | None = None) -> None:
        self.index_dir = index_dir
        self.threshold = threshold
        self.fixed_embedder = embedder
        self.searcher: Searcher | None = None
        self.error: str | None = None
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Load the live build if the pointer changed since the last load (checked at most once a second)."""
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_CHECK_SECONDS:
            return
        if not self._lock.acquire(blocking=force):
            return  # another thread is checking or loading; keep answering from the current index
        try:
            self._checked = now
            stamp = pointer_stamp(self.index_dir)
            if stamp == self._stamp and not force:
                return
            try:
                index = load(self.index_dir)
                embedder = self._embedder_for(index)
                self.searcher, self.error, self._stamp = Searcher(index, embedder, self.threshold), None, stamp
                log.info("serving index build %s (%d chunks)", index.build_id, len(index.chunks))
            except IndexUnavailable as exc:
                self.error, self._stamp = str(exc), stamp
                if self.searcher is None:
                    log.error("%s", exc)
                else:
                    log.error("kept build %s: the new one is unusable: %s", self.searcher.index.build_id, exc)
        finally:
            self._lock.release()

    def _embedder_for(self, index: Index) -> Embedder:
        if self.fixed_embedder is not None:
            return self.fixed_embedder
        old = self.searcher
        if old is not None and old.index.manifest["model"] == index.manifest["model"]:
            return old.embedder  # same model: keep the loaded encoder, do not pay for a second one
        return load_embedder(index)

    def get(self) -> Searcher:
        """The current searcher; IndexUnavailable when no index has ever loaded."""
        self.refresh()
        if self.searcher is None:
            raise IndexUnavailable(self.error or "no index loaded; run `qa build`")
        return self.searcher
