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

from .engine import IndexHolder
from .postgres_store import PostgresBackend, embedded_server_url
from .settings import resolve

WEB = Path(__file__).resolve().parents[2] / "web"  # templates and static files, at the project's top level
MAX_BODY_BYTES = 16 * 1024
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
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

    app.extensions["qa.index"] = app.config.get("INDEX_HOLDER") or IndexHolder(
        Path(app.config["INDEX"]), app.config.get("ANSWERABLE_THRESHOLD"), app.config.get("EMBEDDER"),
        app.config["QUERY_ENCODER"], app.config["ONNX_THREADS"], backend=postgres_backend(app.config))

    from . import api, pages

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


def index_holder(app: Flask) -> IndexHolder:
    return app.extensions["qa.index"]


def limit_rate(app: Flask, rate: str) -> None:
    """One limit per client address over the whole app, in memory: each gunicorn worker counts on its own."""
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    limiter = Limiter(get_remote_address, app=app, application_limits=[rate], storage_uri="memory://",
                      strategy="sliding-window-counter", headers_enabled=False)

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

    from .api import is_api_request

    @app.after_request
    def cors_headers(response: Response) -> Response:
        if not is_api_request():
            return response
        response.vary.add("Origin")
        origin = request.headers.get("Origin", "")
        if "*" not in origins and origin not in origins:
            return response
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_SECONDS)
        return response
