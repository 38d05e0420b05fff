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


class Speller:
    """Corrects the words of a question that the corpus does not know to the nearest words it does.

    Parameters
    ----------
    texts
        The corpus's text (its passages, as indexed).
    stopwords
        Words never corrected (and never offered as corrections).
    dictionary
        Words that are spelt right although the corpus lacks them; default `english_words()`.
    """

    def __init__(
        self, texts: Iterable[str], stopwords: frozenset[str] = frozenset(), dictionary: Container[str] | None = None
    ) -> None:
        self.frequency: Counter[str] = Counter(w for text in texts for w in WORD.findall(text.lower()))
        self.stopwords = stopwords
        self.dictionary = english_words() if dictionary is None else dictionary
        self.table: dict[str, list[str]] = {}
        for word in self.frequency:
            if len(word) >= MIN_LENGTH - 1 and word.isalpha() and word not in stopwords:
                for variant in deletions(word, 2 if len(word) >= 8 else 1):
                    self.table.setdefault(variant, []).append(word)

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
            or word in self.frequency
            or word in self.dictionary
        ):
            return None
        limit = max_distance(word)
        candidates = {c for variant in deletions(word) for c in self.table.get(variant, ())}
        scored = [
            (d, c[-1] != word[-1], -self.frequency[c], c) for c in candidates if (d := edit_distance(word, c)) <= limit
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
