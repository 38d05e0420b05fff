"""The lexical ranker: BM25 over stemmed, stop-worded passage text, computed as bm25s computes it."""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import Stemmer

from .tables import DamagedTable, StringTable, mapped


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


TOKEN = re.compile(r"(?u)\b\w\w+\b")  # bm25s's (and scikit-learn's) default token pattern
# bm25s's English stop words (`bm25s.stopwords.STOPWORDS_EN`, a test holds them equal), written out: importing
# bm25s imports scipy, 17 MB more in every server worker for a list of 33 words.
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they "
    "this to was will with".split()
)
# A designation with a short prefix and a hyphen ("S-300", "Su-35", "MiG-29"): its letters and number joined, then the
# parts again, so that "s300", "S300" and "S-300" share the term "s300" and a search for "300" still finds the text.
# Longer prefixes ("COVID-19") are words of their own already; joining them only reweighs BM25 (lost a dev question).
DESIGNATION = re.compile(r"(?u)\b([^\W\d_]{1,3})-(\d+[^\W\d_]*)\b")


# bm25s's defaults (`bm25s.BM25()`: method "lucene"), which the scores reproduce
K1 = 1.5
B = 0.75


def normalize(text: str) -> str:
    """The text as the lexical ranker reads it: each hyphenated designation also written as one word."""
    return DESIGNATION.sub(r"\1\2 \1-\2", text)


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """The terms `bm25s.tokenize` gives for the `normalize`d texts (a test holds them equal), without its per-call
    set-up of progress bars and the stop-word set: 5 µs a question instead of 42."""
    stem = _stemmer().stemWords
    return [stem([t for t in TOKEN.findall(normalize(text).lower()) if t not in STOPWORDS]) for text in texts]


class Postings:
    """BM25 over a build's passages from postings mapped from its files, for the whole corpus or one document.

    Per term (a `StringTable` of the stemmed terms), the passages that hold it in chunk id order and how often:
    compressed sparse columns (`indptr`, `passages`, `counts`), with each passage's length in terms. A query's
    scores are computed for its own terms only; within one document the statistics (passages, document
    frequencies, mean length) are those of the document's contiguous chunk range, so that a search within it ranks
    exactly as if it were the only document. The arithmetic is bm25s's (method "lucene", `K1`, `B`) step by step,
    so the scores are bm25s's to the bit (the tests compare them).
    """

    def __init__(self, folder: Path) -> None:
        self.terms = StringTable(folder, "terms")
        self.indptr = mapped(folder / "postings.indptr.npy")
        self.passages = mapped(folder / "postings.passages.npy")
        self.counts = mapped(folder / "postings.counts.npy")
        self.lengths = mapped(folder / "passages.lengths.npy")
        if not (
            self.indptr.shape == (len(self.terms) + 1,)
            and self.passages.shape == self.counts.shape == (int(self.indptr[-1]),)
            and self.lengths.ndim == 1
        ):
            raise DamagedTable("the BM25 postings files do not match")

    @staticmethod
    def write(folder: Path, texts: Sequence[str]) -> None:
        """The postings of `texts` (one per passage, in chunk id order) into `folder`."""
        tokenized = tokenize(texts)
        vocabulary = sorted({term for terms in tokenized for term in terms})
        position = StringTable.write(folder, "terms", vocabulary)
        term_ids: list[int] = []
        passages: list[int] = []
        counts: list[int] = []
        for passage, terms in enumerate(tokenized):
            for term, count in Counter(terms).items():
                term_ids.append(position[term])
                passages.append(passage)
                counts.append(count)
        order = np.argsort(np.array(term_ids, dtype=np.int64), kind="stable")  # by term, then by passage
        indptr = np.concatenate([[0], np.cumsum(np.bincount(term_ids, minlength=len(vocabulary)))])
        np.save(folder / "postings.indptr.npy", indptr.astype(np.int64))
        np.save(folder / "postings.passages.npy", np.array(passages, dtype=np.int32)[order])
        np.save(folder / "postings.counts.npy", np.array(counts, dtype=np.int32)[order])
        np.save(folder / "passages.lengths.npy", np.array([len(t) for t in tokenized], dtype=np.int64))

    def scores(self, query_terms: list[str], first: int, last: int) -> np.ndarray:
        """BM25 score of each passage of [first, last) for `query_terms` (a repeated term counts again, as in bm25s),
        with the statistics of that range alone."""
        n = last - first
        scores = np.zeros(n, dtype=np.float32)
        term_ids = self.terms.positions(query_terms)
        if not (term_ids >= 0).any():
            return scores
        lengths = self.lengths[first:last]
        average = lengths.mean()  # float64, as bm25s's
        whole = (first, last) == (0, len(self.lengths))
        for term in term_ids[term_ids >= 0].tolist():
            lo, hi = int(self.indptr[term]), int(self.indptr[term + 1])
            if not whole:
                a, b = np.searchsorted(self.passages[lo:hi], (first, last))
                lo, hi = lo + int(a), lo + int(b)
            df = hi - lo
            if not df:
                continue
            rows = self.passages[lo:hi] - first
            idf = np.float32(math.log(1 + (n - df + 0.5) / (df + 0.5)))
            tf = self.counts[lo:hi].astype(np.float32)
            # bm25s: tf / (k1 * ((1 - b) + b * l_d / l_avg) + tf) in float64, times the float32 idf, kept as float32
            tfc = tf / (K1 * ((1 - B) + B * lengths[rows] / average) + tf)
            scores[rows] += (idf * tfc).astype(np.float32)
        return scores
