"""One small module per document format, each with `parse(text) -> Layout`. Adding a format touches only this table."""

from __future__ import annotations

from typing import Callable

from . import markdown, plaintext
from .layout import Layout

PARSERS: dict[str, Callable[[str], Layout]] = {
    ".txt": plaintext.parse,
    ".md": markdown.parse,
    ".markdown": markdown.parse,
}
