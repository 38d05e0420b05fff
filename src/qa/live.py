"""The live index a web app answers from: kept on the app by `init_app`, reached by the views through `get_searcher`.

A leaf of the web layer (it imports no view module), so blueprints and the factory can all import it.
"""

from __future__ import annotations

from flask import Flask, current_app

from .engine import IndexHolder
from .search import Searcher

EXTENSION = "qa.index"


def init_app(app: Flask, holder: IndexHolder) -> None:
    app.extensions[EXTENSION] = holder


def index_holder(app: Flask | None = None) -> IndexHolder:
    """The holder of `app` (default: the app handling the current request)."""
    return (app or current_app).extensions[EXTENSION]


def get_searcher() -> Searcher:
    """The searcher of the live build; IndexUnavailable when none has loaded."""
    return index_holder().get()
