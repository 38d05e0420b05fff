"""The Flask application factory (configuration: defaults -> environment -> `test_config`).

Hardening lives here: security headers on every response, an optional per-client rate limit, CORS for the JSON
API (no origin allowed unless configured) and a request id on every response and error log line.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from flask_cors import CORS

from . import api, live, pages
from .engine import IndexHolder
from .limits import MAX_BODY_BYTES
from .postgres_store import PostgresBackend, embedded_server_url
from .settings import resolve


def web_folder() -> Path:
    """The templates and static files: packaged as `qa/webassets` by an install, `web/` beside `src/` in a checkout.

    The repository keeps them in `web/` at its top level; pyproject.toml maps that folder into the package.
    """
    here = Path(__file__).resolve().parent
    installed = here / "webassets"
    return installed if installed.is_dir() else here.parents[1] / "web"


WEB = web_folder()
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a client's id is echoed and logged: nothing that could forge a line
NOT_LIMITED = ("/static/", "/api/health", "/api/openapi.json")  # health checks and the spec are never refused
CORS_MAX_AGE_SECONDS = 600


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, template_folder=str(WEB / "templates"), static_folder=str(WEB / "static"))
    app.config.update(resolve().flask_config())
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False)
    if test_config:
        app.config.update(test_config)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # Flask's DefaultJSONProvider has both
    app.json.sort_keys = False  # type: ignore[attr-defined]

    live.init_app(
        app,
        app.config.get("INDEX_HOLDER")
        or IndexHolder(
            Path(app.config["INDEX"]),
            app.config.get("ANSWERABLE_THRESHOLD"),
            app.config.get("EMBEDDER"),
            app.config["QUERY_ENCODER"],
            app.config["ONNX_THREADS"],
            backend=postgres_backend(app.config),
        ),
    )
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    api.register_errors(app)

    @app.before_request
    def assign_request_id() -> None:
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]

    if app.config.get("RATE_LIMIT"):
        limit_rate(app, app.config["RATE_LIMIT"])
    allow_origins(app, parse_origins(app.config.get("CORS_ORIGINS") or ""))

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Request-Id"] = g.get("request_id", "")
        return response

    return app


def postgres_backend(config: dict[str, Any]) -> PostgresBackend | None:
    """The database for BACKEND = postgres: DATABASE_URL, else an embedded server under the index folder, shared
    by the processes that use it and stopped when the last of them exits (`qa serve` starts it before its workers
    fork and hands them its URL)."""
    if config.get("BACKEND") != "postgres":
        return None
    return PostgresBackend(config.get("DATABASE_URL") or embedded_server_url(Path(config["INDEX"])))


def limit_rate(app: Flask, rate: str) -> None:
    """One limit per client address over the whole app, in memory: each gunicorn worker counts on its own."""
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    limiter = Limiter(
        get_remote_address,
        app=app,
        application_limits=[rate],
        storage_uri="memory://",
        strategy="sliding-window-counter",
        headers_enabled=False,
    )

    @limiter.request_filter
    def exempt() -> bool:
        return request.method == "OPTIONS" or request.path.startswith(NOT_LIMITED)

    @app.after_request
    def retry_after(response: Response) -> Response:
        if response.status_code == 429 and limiter.current_limit is not None:
            wait = limiter.current_limit.reset_at - time.time()
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response


def parse_origins(setting: str) -> frozenset[str]:
    return frozenset(o.strip().rstrip("/") for o in setting.split(",") if o.strip())


def allow_origins(app: Flask, origins: frozenset[str]) -> None:
    """CORS for /api/ only: the listed origins (or `*`) may call it from a browser; none when the list is empty."""
    if not origins:
        return
    CORS(
        app,
        resources={api.API_PATH: {"origins": sorted(origins)}},
        methods=["GET", "POST"],
        allow_headers=["Content-Type"],
        max_age=CORS_MAX_AGE_SECONDS,
        send_wildcard=True,
        always_send=False,
        vary_header=False,
    )

    @app.after_request
    def vary_by_origin(response: Response) -> Response:
        """Whether the API answers with CORS headers depends on the Origin: say so to caches, refusals included."""
        if api.is_api_request():
            response.vary.add("Origin")
        return response
