"""The Flask application factory (configuration: defaults -> environment -> `test_config`)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, g, request

from .engine import IndexHolder
from .settings import defaults_from_env

WEB = Path(__file__).resolve().parents[2] / "web"  # templates and static files, at the project's top level
MAX_BODY_BYTES = 16 * 1024

log = logging.getLogger(__name__)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, template_folder=str(WEB / "templates"), static_folder=str(WEB / "static"))
    app.config.update(defaults_from_env())
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False)
    if test_config:
        app.config.update(test_config)
    app.json.ensure_ascii = False
    app.json.sort_keys = False

    app.extensions["qa.index"] = app.config.get("INDEX_HOLDER") or IndexHolder(
        Path(app.config["INDEX"]), app.config.get("ANSWERABLE_THRESHOLD"), app.config.get("EMBEDDER"))

    from . import api, pages

    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    api.register_errors(app)

    @app.before_request
    def assign_request_id() -> None:
        g.request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex[:16]

    @app.after_request
    def security_headers(response):
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Request-Id"] = g.get("request_id", "")
        return response

    return app


def index_holder(app: Flask) -> IndexHolder:
    return app.extensions["qa.index"]
