"""Opening the live index for searching, and swapping in a new build while serving.

The CLI opens a `Searcher` once; the web app keeps an `IndexHolder` that notices a new build (the `CURRENT`
pointer changed; a watcher thread looks every RELOAD_CHECK_SECONDS, requests or not) and loads it in the background,
answering from the old one until the new one is ready.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from importlib.metadata import PackageNotFoundError
from pathlib import Path

from .confidence import Calibration, load_calibration, load_weights
from .embedding import DIMENSION, MODEL_ID, Embedder, SentenceTransformerEmbedder, model_version
from .index import Index, IndexUnavailable, load, pointer_stamp, stale_reasons
from .postgres_store import DatabaseUnavailable, PostgresBackend
from .search import Searcher

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 0.2


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


def load_embedder(index: Index, encoder: str = "exact", threads: int = 1) -> Embedder:
    """The query encoder for this build: its ONNX export when there is one (no torch), else sentence-transformers.

    `encoder` and `threads` are the `query_encoder` and `onnx_threads` settings (for the ONNX export only).
    """
    from .onnx_embedding import OnnxEmbedder, has_export

    if has_export(index.path):
        return OnnxEmbedder(index.path, threads=threads, encoder=encoder)
    return SentenceTransformerEmbedder()


def open_searcher(
    index_dir: Path,
    corpus: Path | None = None,
    threshold: float | None = None,
    embedder: Embedder | None = None,
    encoder: str = "exact",
    threads: int = 1,
    backend: PostgresBackend | None = None,
    calibration: Calibration | None = None,
) -> Searcher:
    """Load the live index (checked against `corpus` when given) and its query encoder (see `load_embedder`).

    With a `backend` (PostgreSQL), the live build is the database's and the search runs there. The confidence uses
    `calibration`, else the one `qa tune` saved in `index_dir`, else the shipped one.
    """
    if backend is None:
        index = load_index(index_dir)
        store = None
    else:
        index, store = backend.open(index_dir)
    if corpus is not None:
        check_fresh(index, corpus)
    return Searcher(
        index,
        embedder or load_embedder(index, encoder, threads),
        threshold,
        store=store,
        weights=load_weights(index_dir),
        calibration=calibration or load_calibration(index_dir),
    )


class IndexHolder:
    """The searcher a server answers with; reloads in the background when a new build goes live. Thread-safe.

    Requests never wait for a reload: they keep the searcher they started with, and the swap is one assignment.
    A new build that cannot be used (damaged, another model) is refused and the previous one kept.
    """

    def __init__(
        self,
        index_dir: Path,
        threshold: float | None = None,
        embedder: Embedder | None = None,
        encoder: str = "exact",
        threads: int = 1,
        backend: PostgresBackend | None = None,
    ) -> None:
        self.index_dir = index_dir
        self.backend = backend  # None: the file build under `index_dir`; else the database's live build
        self.threshold = threshold
        self.fixed_embedder = embedder
        self.encoder, self.threads = encoder, threads  # for `load_embedder`
        self.searcher: Searcher | None = None
        self.error: str | None = None
        # Why the database could not be asked at the last check (a request's or the watcher's), None once a check
        # succeeds: health reads it, so that it does not say ok between two checks while the server is down.
        self.unreachable: str | None = None
        self._stamp: object = None
        self._checked = 0.0
        self._loading = threading.Lock()
        self.refresh(wait=True)
        threading.Thread(target=watch, args=(weakref.ref(self),), name="index-watch", daemon=True).start()

    def refresh(self, wait: bool = False) -> None:
        """Load the live build if the pointer changed (checked at most every RELOAD_CHECK_SECONDS unless `wait`).

        `wait` loads in this thread (start-up); otherwise a background thread loads, and a check that finds a
        load already running returns at once.
        """
        now = time.monotonic()
        if not wait and now - self._checked < RELOAD_CHECK_SECONDS:
            return
        self._checked = now
        if not wait:
            try:
                stamp = self._live_stamp()
            except DatabaseUnavailable as exc:
                self.unreachable = str(exc)
                raise
            self.unreachable = None
            if stamp == self._stamp:
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
            stamp = self._stamp  # kept if the database cannot be asked: asked again at the next check
            try:
                stamp = self._live_stamp()  # read before the build, so a newer pointer is noticed again
                searcher = self._open()
            except DatabaseUnavailable as exc:  # the server may return: ask again at the next check
                stamp = self._stamp
                self._refuse(str(exc))
            except IndexUnavailable as exc:
                self._refuse(str(exc))
            except Exception as exc:  # an encoder that will not load, say: keep serving, say why in the log
                log.exception("index reload failed")
                self._refuse(f"index in {self.index_dir} could not be loaded ({type(exc).__name__}); run `qa build`")
            else:
                # The error first: dropping the old searcher may run finalizers, which can hand the GIL to a request
                # thread that would then see the new build beside the old build's refusal.
                self.error = None
                self.searcher = searcher
                log.info("serving index build %s (%d chunks)", searcher.index.build_id, len(searcher.index.chunks))
            self._stamp = stamp
        finally:
            self._loading.release()

    def _live_stamp(self) -> object:
        """What changes when a new build goes live: the pointer file's stamp, or the database's live build id."""
        return pointer_stamp(self.index_dir) if self.backend is None else self.backend.live_build_id()

    def _open(self) -> Searcher:
        if self.backend is None:
            index, store = load_index(self.index_dir), None
        else:
            index, store = self.backend.open(self.index_dir)
        fixed = self.fixed_embedder
        check_model(index, *((fixed.model_id, fixed.dimension) if fixed else (MODEL_ID, DIMENSION)))
        return Searcher(
            index,
            self._embedder_for(index),
            self.threshold,
            store=store,
            weights=load_weights(self.index_dir),
            calibration=load_calibration(self.index_dir),
        )

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
        return load_embedder(index, self.encoder, self.threads)

    def get(self) -> Searcher:
        """The current searcher; IndexUnavailable when no usable index has loaded."""
        self.refresh()
        searcher = self.searcher
        if searcher is None:
            raise IndexUnavailable(self.error or "no index loaded; run `qa build`")
        return searcher


def watch(holder: weakref.ref[IndexHolder]) -> None:
    """Check for a new build every RELOAD_CHECK_SECONDS for as long as the holder exists, so that an idle server
    switches within a second of a build going live, not at its next request."""
    while (alive := holder()) is not None:
        try:
            alive.refresh()
        except IndexUnavailable:  # the database unreachable: requests answer 503 meanwhile; ask again next time
            pass
        del alive  # hold no reference while sleeping, or the holder could never be collected
        time.sleep(RELOAD_CHECK_SECONDS)
