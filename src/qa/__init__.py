"""Question answering over long documents: ranked, cited passages of the document's own text."""

__version__ = "0.1.0"
