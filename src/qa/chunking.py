"""Sentence-aware chunks: a paragraph is the natural unit; long paragraphs are split on sentence boundaries.

A chunk never crosses a section or paragraph boundary and never splits a sentence, so `text[start:end]` is always
a run of whole sentences of one paragraph.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .documents import Document
from .sentences import sentence_spans

MAX_WORDS = 160  # measured best of 80/120/160 (README); the model truncates at 256 word pieces


@dataclass(frozen=True)
class Chunk:
    document: str
    document_title: str
    section: str
    section_index: int
    chunk: int  # 0-based within the document
    paragraph: int  # 1-based within the section
    start: int
    end: int
    text: str
    sentences: tuple[tuple[int, int], ...]  # absolute offsets of the chunk's sentences

    def sentence_texts(self) -> list[str]:
        return [self.text[s - self.start : e - self.start] for s, e in self.sentences]

    def to_record(self) -> dict:
        record = asdict(self)
        record["sentences"] = [list(s) for s in self.sentences]
        return record

    @classmethod
    def from_record(cls, record: dict) -> Chunk:
        return cls(**{**record, "sentences": tuple(tuple(s) for s in record["sentences"])})


def word_count(text: str) -> int:
    return len(text.split())


def split_sentences(text: str, spans: list[tuple[int, int]], max_words: int) -> list[list[tuple[int, int]]]:
    """Group consecutive sentences into the fewest groups of at most `max_words`, balanced in length.

    A single sentence longer than `max_words` stays whole: sentences are never split.
    """
    words = [word_count(text[s:e]) for s, e in spans]
    parts = max(1, math.ceil(sum(words) / max_words))
    target = sum(words) / parts
    groups: list[list[tuple[int, int]]] = [[]]
    filled = 0
    for span, n in zip(spans, words):
        current = groups[-1]
        if current and (filled + n > max_words or filled + n / 2 > target):
            groups.append([])
            filled = 0
        groups[-1].append(span)
        filled += n
    return groups


def chunk_document(document: Document, max_words: int = MAX_WORDS) -> list[Chunk]:
    chunks: list[Chunk] = []
    for paragraph in document.paragraphs:
        spans = sentence_spans(document.text, paragraph.start, paragraph.end) or [(paragraph.start, paragraph.end)]
        section = document.sections[paragraph.section]
        for group in split_sentences(document.text, spans, max_words):
            start, end = group[0][0], group[-1][1]
            chunks.append(
                Chunk(
                    document=document.id,
                    document_title=document.title,
                    section=section.title,
                    section_index=paragraph.section,
                    chunk=len(chunks),
                    paragraph=paragraph.number,
                    start=start,
                    end=end,
                    text=document.text[start:end],
                    sentences=tuple(group),
                )
            )
    return chunks
