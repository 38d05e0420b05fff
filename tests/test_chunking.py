"""Chunks: sentence-aware, within one paragraph, offsets exact, bounded length."""

import pytest

from qa.chunking import MAX_WORDS, chunk_document, split_sentences, word_count
from qa.documents import read_corpus
from qa.sentences import sentence_spans

from conftest import CORPUS


@pytest.fixture(scope="module")
def paper_chunks():
    (doc,) = read_corpus(CORPUS)
    return doc, chunk_document(doc)


def test_every_chunk_slices_the_document_text(paper_chunks):
    doc, chunks = paper_chunks
    assert all(doc.text[c.start:c.end] == c.text for c in chunks)
    assert [c.chunk for c in chunks] == list(range(len(chunks)))


def test_no_chunk_crosses_a_section_or_a_paragraph(paper_chunks):
    doc, chunks = paper_chunks
    for c in chunks:
        section = doc.sections[c.section_index]
        assert section.title == c.section and section.start <= c.start < c.end <= section.end
        assert any(p.start <= c.start and c.end <= p.end for p in doc.paragraphs)


def test_chunks_are_whole_sentences_and_bounded(paper_chunks):
    doc, chunks = paper_chunks
    for c in chunks:
        assert c.sentences[0][0] == c.start and c.sentences[-1][1] == c.end
        assert word_count(c.text) <= MAX_WORDS or len(c.sentences) == 1


def test_every_paragraph_is_covered_exactly(paper_chunks):
    doc, chunks = paper_chunks
    covered = sum(c.end - c.start for c in chunks)
    assert covered <= sum(p.end - p.start for p in doc.paragraphs)
    for p in doc.paragraphs:
        parts = [c for c in chunks if p.start <= c.start < p.end]
        assert parts and parts[0].start == p.start and parts[-1].end == p.end


def test_abbreviations_do_not_end_sentences():
    text = "The U.S. Army met Gen. Smith and Dr. Jones in Washington. Then they left."
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "The U.S. Army met Gen. Smith and Dr. Jones in Washington.", "Then they left."]


def test_long_paragraph_splits_into_balanced_groups_of_sentences():
    text = " ".join(f"Sentence number {i} has exactly seven words." for i in range(30))
    spans = sentence_spans(text)
    groups = split_sentences(text, spans, max_words=50)
    sizes = [sum(word_count(text[s:e]) for s, e in g) for g in groups]
    assert sum(len(g) for g in groups) == 30 and max(sizes) <= 50 and len(groups) == 5
    assert max(sizes) - min(sizes) <= 7
