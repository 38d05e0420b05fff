"""Running the app: gunicorn with threaded workers (keep-alive works), or Flask's reloader with `--dev`."""

from __future__ import annotations

from typing import Any

from .limits import MAX_REQUEST_LINE

# Measured with bench/run.py (docs/benchmark.md), 2 workers on 2 cores: 2, 4 and 8 threads served the same requests
# per second for the same worker CPU per request, 1 thread fewer; 4 also keeps a slow client from holding a worker.
# onnxruntime runs one intra-op thread per worker (the `onnx_threads` setting): 2 cost 30% more CPU per request.
THREADS_PER_WORKER = 4
KEEPALIVE_SECONDS = 5


def run(config: dict[str, Any], host: str, port: int, workers: int, dev: bool = False) -> None:
    from .app import create_app

    if dev:
        create_app(config).run(host=host, port=port, debug=False, use_reloader=True)
        return

    import gunicorn.http.wsgi
    from gunicorn.app.base import BaseApplication

    gunicorn.http.wsgi.SERVER = "qa"  # the `Server` header: no server name or version for a scanner to match

    class Server(BaseApplication):
        def load_config(self) -> None:
            settings = {
                "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                "workers": max(1, workers),
                "worker_class": "qa.worker.Worker",  # gthread, with JSON errors and a prompt stop
                "threads": THREADS_PER_WORKER,
                "keepalive": KEEPALIVE_SECONDS,
                "timeout": 60,
                "limit_request_line": MAX_REQUEST_LINE,
                "graceful_timeout": 10,
                "accesslog": None,
                "errorlog": "-",
                "loglevel": "info",
                "proc_name": "qa",
                "control_socket_disable": True,  # one shared per-user socket would mix up several servers
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self):
            return create_app(config)  # in each worker: every worker loads the index and model once

    import_before_fork()
    Server().run()


def import_before_fork() -> None:
    """Import in gunicorn's master what every worker imports, and freeze the garbage collector's view of it.

    The workers are forked from the master, so the imported modules' memory is shared between them (copy on write)
    instead of each worker importing them into private memory; `gc.freeze` keeps a worker's collections from
    writing to those objects. Nothing here starts a thread or opens the index: those do not survive a fork, and
    each worker opens the live build itself (`app.create_app`). Measured: bench/worker_memory.py --fork.
    """
    import gc

    import faiss  # noqa: F401
    import onnxruntime  # noqa: F401
    import tokenizers  # noqa: F401

    from . import app, engine, onnx_embedding  # noqa: F401

    gc.freeze()
