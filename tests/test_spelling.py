"""Typo-proof keywords: hyphenated designations as one term, and misspelt words corrected to the corpus's words."""

import pytest

from qa.lexical import STOPWORDS, Postings, tokenize
from qa.spelling import CountedVocabulary, MappedVocabulary, Speller, deletions, edit_distance

TEXTS = ["In 2016 Russia delivered the S-300 air defence system to Iran.",
         "The parliament debated the deal; Mossadegh was overthrown in 1953.",
         "Russia has long delivered arms, and the delivery of fuel followed.",
         "Trade between the two countries remains small."]


@pytest.fixture(scope="module", params=["counted", "mapped"])
def speller(request, tmp_path_factory) -> Speller:
    """The speller over the vocabulary counted in memory, and over the one a build writes and maps."""
    if request.param == "counted":
        return Speller(CountedVocabulary(TEXTS, STOPWORDS), STOPWORDS)
    folder = tmp_path_factory.mktemp("vocabulary")
    MappedVocabulary.write(folder, TEXTS, STOPWORDS)
    vocabulary = MappedVocabulary(folder)
    return Speller(vocabulary, STOPWORDS, vocabulary.english)


@pytest.mark.parametrize("a, b, distance", [("deliverd", "delivered", 1), ("veiw", "view", 1), ("parliment",
                         "parliament", 1), ("mossadeq", "mossadegh", 2), ("abc", "abc", 0), ("", "ab", 2),
                         ("ca", "abc", 3)])
def test_edit_distance(a, b, distance):
    assert edit_distance(a, b) == distance == edit_distance(b, a)


def test_deletions():
    assert deletions("abc") == {"abc", "bc", "ac", "ab"}
    assert deletions("abc", 2) == {"abc", "bc", "ac", "ab", "a", "b", "c"}


@pytest.mark.parametrize("typed, meant", [("deliverd", "delivered"), ("parliment", "parliament"),
                                          ("mossadeq", "mossadegh"), ("delivred", "delivered")])
def test_unknown_words_are_corrected_to_corpus_words(speller, typed, meant):
    assert speller.suggest(typed) == meant


@pytest.mark.parametrize("word", ["delivered", "skill", "rial", "wen", "Mossadeq", "s300", "the", "xyz",
                                  "qqqqqqqq"])
def test_known_english_names_short_and_hopeless_words_stay(speller, word):
    """Corpus words, English words the corpus lacks, capitalised names, short or non-alphabetic words, stop words
    and words with nothing near them in the corpus are never changed."""
    assert speller.suggest(word) is None


def test_correct_rewrites_only_the_unknown_words(speller):
    correction = speller.correct("wen did russia deliverd the S-300, Parliment?")
    assert correction.corrected == "wen did russia delivered the S-300, Parliment?"
    assert correction.words == {"deliverd": "delivered"} and correction.changed
    assert not speller.correct("When did Russia deliver the S-300?").changed


def test_ties_prefer_the_same_last_letter_then_frequency():
    speller = Speller(CountedVocabulary(["delivery delivery delivery delivered"]), dictionary=frozenset())
    assert speller.suggest("deliverd") == "delivered"  # "delivery" is as near and more frequent
    assert speller.suggest("deliverx") == "delivery"  # neither ends in x: the more frequent


@pytest.mark.parametrize("variant", ["s300", "S300", "S-300", "s-300"])
def test_designation_variants_are_one_term(variant, tmp_path):
    Postings.write(tmp_path, TEXTS)
    scores = Postings(tmp_path).scores(tokenize([variant])[0], 0, len(TEXTS))
    assert scores[0] > 0 and not scores[1:].any()
    assert "s300" in tokenize([variant])[0]


def test_long_hyphenated_words_keep_their_parts_only():
    assert tokenize(["COVID-19 post-war"]) == [["covid", "19", "post", "war"]]


@pytest.mark.model
@pytest.mark.parametrize("clean, variants", [
    ("when did russia deliver the S-300", ["wen did russia deliverd the s300", "when did russia deliver the S300"]),
    ("who was behind the 1953 coup against mossadegh", ["who was behind the 1953 coup agaisnt mossadeq"]),
    ("do most iranians have a favorable view of russia", ["do most iranians have a favorible veiw of russia"]),
])
def test_typo_and_hyphen_variants_find_the_clean_spellings_passages(real_searcher, clean, variants):
    expected = [r["chunk"] for r in real_searcher.search(clean)["results"]]
    for variant in variants:
        response = real_searcher.search(variant)
        assert {r["chunk"] for r in response["results"][:3]} == set(expected[:3]), variant  # order may differ
        assert response["query"] == variant


@pytest.mark.model
def test_the_page_shows_the_correction(real_app):
    page = real_app.test_client().get("/?q=wen+did+russia+deliverd+the+s300").get_data(as_text=True)
    assert "Showing results for" in page and "wen did russia delivery the s300" in page
