"""One small module per document format, each with a reader `read(raw: bytes) -> Extracted` (see `reader`).

Adding a format is one module and one line in this table.
"""

from __future__ import annotations

from . import markdown, pdf, plaintext, webpage, word
from .reader import Extracted, Reader, UnreadableDocument, text_reader

READERS: dict[str, Reader] = {
    ".txt": text_reader(plaintext.parse),
    ".md": text_reader(markdown.parse),
    ".markdown": text_reader(markdown.parse),
    ".pdf": pdf.read,
    ".docx": word.read,
    ".html": webpage.read,
    ".htm": webpage.read,
}

__all__ = ["READERS", "Extracted", "Reader", "UnreadableDocument"]
