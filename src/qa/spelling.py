"""Spelling correction of a question against the corpus's own vocabulary (a SymSpell-style lookup).

A hurried reader types "deliverd" or "parliment"; BM25 then finds nothing for the word and the encoder sees an
unfamiliar token. Only a lower-case word that neither the corpus nor an English dictionary knows is corrected, and
only to a word the corpus does contain, within a small edit distance: "rial" or "skill" stay as typed in a corpus
that never uses them, and a capitalised word is taken for a name. The lookup follows SymSpell:
every corpus word is indexed under itself and the strings one deletion away; a typed word's own deletions are
looked up in that table. That finds every corpus word one edit away (an insertion, deletion, substitution or
adjacent transposition) and, since long corpus words are also indexed two deletions away, most of those two edits
away ("mossadeq" for "mossadegh"); each candidate is then checked with the true distance.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Container, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from .tables import DamagedTable, StringTable, mapped, string_hashes

WORD = re.compile(r"(?u)\b\w\w+\b")  # the lexical ranker's token pattern
MIN_LENGTH = 4  # shorter words are left alone: too many corpus words sit one edit from them


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """The words of pyspellchecker's English frequency list (about 160,000; loading takes a fifth of a second)."""
    from spellchecker import SpellChecker

    return frozenset(SpellChecker().word_frequency.dictionary)


def max_distance(word: str) -> int:
    """Edits allowed for a word of this length: one up to 7 letters, two from 8."""
    return 1 if len(word) < 8 else 2


def deletions(word: str, depth: int = 1) -> set[str]:
    """`word` and every string up to `depth` character deletions away from it."""
    found = {word}
    for _ in range(depth):
        found |= {w[:i] + w[i + 1 :] for w in found for i in range(len(w))}
    return found


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


@dataclass(frozen=True)
class Correction:
    """A question as typed and as searched; `words` maps each corrected word to its replacement."""

    original: str
    corrected: str
    words: dict[str, str]

    @property
    def changed(self) -> bool:
        return bool(self.words)


class Vocabulary(Protocol):
    """The corpus's words as the speller reads them: how often each occurs, and the SymSpell deletion table."""

    def count(self, word: str) -> int:
        """Occurrences of `word` in the corpus (0 for a word it does not use)."""
        ...

    def indexed_under(self, variants: Iterable[str]) -> set[str]:
        """The corpus words indexed under any of `variants` (see `indexed_variants`)."""
        ...


class BuildVocabulary(Vocabulary, Protocol):
    """A build's vocabulary, with the speller's dictionary kept beside it (`english_words()` when it was built)."""

    @property
    def english(self) -> Container[str]: ...


def word_counts(texts: Iterable[str]) -> Counter[str]:
    """Occurrences of each lower-case word of `texts`."""
    return Counter(w for text in texts for w in WORD.findall(text.lower()))


def indexed_variants(word: str, stopwords: frozenset[str]) -> set[str]:
    """The strings a corpus word is indexed under: itself and its deletions (two deep from 8 letters), none for a
    word never offered as a correction."""
    if len(word) >= MIN_LENGTH - 1 and word.isalpha() and word not in stopwords:
        return deletions(word, 2 if len(word) >= 8 else 1)
    return set()


class CountedVocabulary:
    """A `Vocabulary` counted in memory from the corpus's text: what a build's vocabulary must equal (the tests)."""

    def __init__(self, texts: Iterable[str], stopwords: frozenset[str] = frozenset()) -> None:
        self.frequency = word_counts(texts)
        self.table: dict[str, list[str]] = {}
        for word in self.frequency:
            for variant in indexed_variants(word, stopwords):
                self.table.setdefault(variant, []).append(word)

    def count(self, word: str) -> int:
        return self.frequency.get(word, 0)

    def indexed_under(self, variants: Iterable[str]) -> set[str]:
        return {c for variant in variants for c in self.table.get(variant, ())}


class MappedVocabulary:
    """A `Vocabulary` a build wrote (`write`), mapped from its files: the words (`StringTable`) with their counts,
    and the deletion table as sorted 64-bit hashes of the variants, each with the position of one word. The build
    also keeps `english`, `english_words()` as a `StringTable`: the speller's dictionary, shared like the rest."""

    def __init__(self, folder: Path) -> None:
        self.english = StringTable(folder, "english")
        self.words = StringTable(folder, "words")
        self.counts = mapped(folder / "words.counts.npy")
        self.variants = mapped(folder / "variants.hashes.npy")
        self.variant_words = mapped(folder / "variants.words.npy")
        if self.counts.shape != (len(self.words),) or self.variants.shape != self.variant_words.shape:
            raise DamagedTable("the speller's vocabulary files do not match")

    @staticmethod
    def write(folder: Path, texts: Iterable[str], stopwords: frozenset[str]) -> None:
        StringTable.write(folder, "english", sorted(english_words()))
        frequency = word_counts(texts)
        words = list(frequency)
        position = StringTable.write(folder, "words", words)
        counts = np.zeros(len(words), dtype=np.int64)
        for word, count in frequency.items():
            counts[position[word]] = count
        np.save(folder / "words.counts.npy", counts)
        pairs = [(variant, position[word]) for word in words for variant in indexed_variants(word, stopwords)]
        hashes = string_hashes(variant for variant, _ in pairs)
        order = np.argsort(hashes, kind="stable")
        np.save(folder / "variants.hashes.npy", hashes[order])
        np.save(folder / "variants.words.npy", np.array([p for _, p in pairs], dtype=np.int32)[order])

    def count(self, word: str) -> int:
        (position,) = self.words.positions([word])
        return int(self.counts[position]) if position >= 0 else 0

    def indexed_under(self, variants: Iterable[str]) -> set[str]:
        """The words under any of `variants`. Variants are found by hash alone: another string with the same 64-bit
        hash would only add a candidate, which `Speller.suggest` still checks by its edit distance."""
        hashes = string_hashes(variants)
        starts = np.searchsorted(self.variants, hashes, side="left")
        ends = np.searchsorted(self.variants, hashes, side="right")
        return {self.words[int(p)] for a, b in zip(starts, ends) for p in self.variant_words[a:b]}


class Speller:
    """Corrects the words of a question that the corpus does not know to the nearest words it does.

    Parameters
    ----------
    vocabulary
        The corpus's words (its passages, as indexed): a build's (`MappedVocabulary`,
        `postgres_store.DatabaseVocabulary`), or a `CountedVocabulary`.
    stopwords
        Words never corrected (and, when the vocabulary was made with the same, never offered as corrections).
    dictionary
        Words that are spelt right although the corpus lacks them; default `english_words()`.
    """

    def __init__(
        self, vocabulary: Vocabulary, stopwords: frozenset[str] = frozenset(), dictionary: Container[str] | None = None
    ) -> None:
        self.vocabulary = vocabulary
        self.stopwords = stopwords
        self.dictionary = english_words() if dictionary is None else dictionary

    def suggest(self, word: str) -> str | None:
        """The corpus word replacing `word` as typed, or None when it is known, a name, too short or unmatched.

        Among candidates within `max_distance`, the nearest wins, then one ending in the same letter (a typist
        drops or swaps letters inside a word more often than at its end: "deliverd" is "delivered", not
        "delivery"), then the most frequent in the corpus, then the alphabetically first.
        """
        if (
            len(word) < MIN_LENGTH
            or not word.isalpha()
            or not word.islower()
            or word in self.stopwords
            or word in self.dictionary
            or self.vocabulary.count(word)
        ):
            return None
        limit = max_distance(word)
        candidates = self.vocabulary.indexed_under(deletions(word))
        scored = [
            (d, c[-1] != word[-1], -self.vocabulary.count(c), c)
            for c in candidates
            if (d := edit_distance(word, c)) <= limit
        ]
        return min(scored)[-1] if scored else None

    def correct(self, question: str) -> Correction:
        """The question with each unknown word replaced by its suggestion, the rest of the text untouched."""
        words: dict[str, str] = {}

        def replace(match: re.Match[str]) -> str:
            typed = match.group(0)
            suggestion = self.suggest(typed)
            if suggestion is None:
                return typed
            words[typed] = suggestion
            return suggestion

        corrected = WORD.sub(replace, question)
        return Correction(question, corrected, words)
