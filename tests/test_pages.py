"""The HTML pages through Flask's test client, over the tiny two-document corpus and the fake embedder."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from itertools import groupby
from pathlib import Path

import pytest

from qa.app import WEB, create_app
from qa.contract import K_RULE
from qa.live import index_holder
from qa.chunking import chunk_document
from qa.pages import (EMPTY_QUERY, INDEX_DOWN, TOO_LONG_QUERY, example_questions, marked_segments,
                      reader_sections)
from qa.search import MAX_QUERY_CHARS, Searcher

XSS = "<script>alert(1)</script>"
ASSET_LIMIT_BYTES = 100_000


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""

    def __getitem__(self, name: str) -> str:
        return self.attrs[name]

    def has(self, name: str) -> bool:
        return name in self.attrs

    @property
    def words(self) -> str:
        return " ".join(self.text.split())


class Page(HTMLParser):
    """A parsed page: its elements with their attributes and text, and any inline code.

    The inside of a <template> (search.js's skeleton of a result) is inert, so it is left out.
    """

    VOID = {"meta", "link", "input", "br", "img", "hr", "source"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.inline_code: list[str] = []
        self._open: list[Element] = []
        self._in_template = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_template = self._in_template or tag == "template"
        if self._in_template:
            return
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.elements.append(element)
        self.inline_code += [f"{tag} {name}=" for name in element.attrs if name == "style" or name.startswith("on")]
        if tag == "style":
            self.inline_code.append("<style>")
        if tag not in self.VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        if self._in_template:
            self._in_template = tag != "template"
            return
        while self._open and self._open.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1].tag == "script" and not self._open[-1].has("src") and data.strip():
            self.inline_code.append(f"<script>{data.strip()[:40]}")
        for element in self._open:
            element.text += data

    def find(self, tag: str, **attrs: str) -> list[Element]:
        """Every `tag` element whose attributes include `attrs` (`class_` matches one class, `for_` is `for`)."""
        wanted = {k.rstrip("_"): v for k, v in attrs.items()}
        return [e for e in self.elements if e.tag == tag and all(
            v in e.attrs.get(k, "").split() if k == "class" else e.attrs.get(k) == v for k, v in wanted.items())]

    def text(self, element_id: str) -> str:
        return next(e.words for e in self.elements if e.attrs.get("id") == element_id)

    def visible(self, element_id: str) -> bool:
        return not any(e.attrs.get("id") == element_id and e.has("hidden") for e in self.elements)


def get(client, url: str, status: int = 200) -> tuple[Page, str]:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    html = response.get_data(as_text=True)
    return Page(html), html


def result_ids(page: Page) -> list[str]:
    return [a["id"] for a in page.find("li", class_="result")]


# ---------------------------------------------------------------- the search page


def test_search_page_is_a_labelled_autofocused_form_with_landmarks(client):
    page, html = get(client, "/")
    assert re.search(r'<html lang="en">', html)
    assert page.find("input", id="q", name="q", type="search")[0].attrs.keys() >= {"autofocus", "maxlength"}
    assert page.find("label", for_="q")
    assert page.find("form", role="search", method="get", action="/")
    for landmark in ("header", "nav", "main", "footer"):
        assert page.find(landmark), landmark
    assert not page.visible("results") and page.visible("examples")


def test_example_questions_come_from_the_section_titles(client, app):
    page, _ = get(client, "/")
    examples = [a["href"] for a in page.find("a", **{"data-search": ""}) if not a.has("data-more")]
    titles = {s.title for d in index_holder(app).get().index.documents.values() for s in d.sections}
    assert 1 <= len(examples) <= 4
    assert all(href.startswith("/?q=") for href in examples)
    shown = page.text("examples")
    assert any(title in shown for title in titles - {"Introduction", "Abstract"})
    assert "Introduction" not in shown and "Abstract" not in shown


def test_example_questions_skip_generic_and_long_titles(app):
    documents = list(index_holder(app).get().index.documents.values())
    questions = example_questions(documents, count=10)
    assert questions and all(q.startswith("What does the document say about ") for q in questions)
    assert not any(generic in q for q in questions for generic in ("Introduction", "Abstract"))


def test_results_show_the_passage_marked_cited_and_linked_to_its_context(client):
    page, html = get(client, "/?q=Nile+flood")
    box = page.find("input", id="q")[0]
    assert box["value"] == "Nile flood" and not box.has("autofocus")  # the query stays; focus stays at the top
    assert page.text("results-heading") == "Answers" and not page.visible("examples")
    first = page.text("r-1")
    assert "The Nile › ¶ 2" in first and "A Small Report on Rivers" in first
    assert re.search(r'id="r-1".*?<blockquote[^>]*><mark>Farmers along the Nile depend on its yearly flood\.</mark>',
                     html, re.S)
    context = page.find("a", class_="context")[0]["href"]
    assert re.fullmatch(r"/documents/rivers\?q=Nile\+flood#c-\d+", context)
    assert re.fullmatch(r"/documents/rivers#c-\d+", page.find("a", class_="permalink")[0]["href"])
    assert page.find("button", class_="copy")[0].has("hidden")  # shown by search.js, which can copy
    assert re.search(r"score \d\.\d\d", first)
    assert result_ids(page) == [f"r-{n}" for n in range(1, len(result_ids(page)) + 1)]


def test_a_question_is_shown_as_text_never_as_markup(client):
    page, html = get(client, "/?q=" + XSS)
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert page.find("input", id="q")[0]["value"] == XSS
    reader, reader_html = get(client, "/documents/rivers?q=" + XSS)
    assert XSS not in reader_html and reader.find("q")


@pytest.mark.parametrize("query", ["", "   "])
def test_an_empty_question_gets_a_friendly_message(client, query):
    page, _ = get(client, f"/?q={query}", status=400)
    assert page.text("search-error") == EMPTY_QUERY and page.visible("search-error")
    assert not page.visible("results")
    box = page.find("input", id="q")[0]
    assert box.has("autofocus") and box["aria-invalid"] == "true" and "search-error" in box["aria-describedby"]


def test_a_too_long_question_gets_a_friendly_message(client):
    query = "river " * (MAX_QUERY_CHARS // 6 + 1)
    page, _ = get(client, f"/?q={query}", status=400)
    assert page.text("search-error") == TOO_LONG_QUERY
    assert page.find("input", id="q")[0]["maxlength"] == str(MAX_QUERY_CHARS)


def test_an_unknown_document_gets_a_friendly_message(client):
    page, _ = get(client, "/?q=river&document=nowhere", status=400)
    assert "nowhere" in page.text("search-error")


def test_a_server_error_is_a_friendly_page_without_a_stack_trace(client, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Searcher, "search", explode)
    page, html = get(client, "/?q=river", status=500)
    assert "Something went wrong" in html and "request id" in html
    assert "Traceback" not in html and "secret internals" not in html


@pytest.mark.parametrize("url", ["/", "/?q=river", "/documents", "/documents/rivers"])
def test_without_an_index_the_pages_say_so(tmp_path: Path, fake_embedder, url):
    client = create_app({"TESTING": True, "INDEX": str(tmp_path / "none"), "EMBEDDER": fake_embedder}).test_client()
    _, html = get(client, url, status=503)
    assert INDEX_DOWN in html


@pytest.mark.parametrize("threshold, heading", [(-1.0, "Answers"), (1.01, "Closest passages")])
def test_unanswerable_questions_show_the_closest_passages_apart(tiny_corpus, tiny_index, fake_embedder, threshold,
                                                               heading):
    client = create_app({"TESTING": True, "CORPUS": str(tiny_corpus), "INDEX": str(tiny_index),
                         "EMBEDDER": fake_embedder, "ANSWERABLE_THRESHOLD": threshold}).test_client()
    page, html = get(client, "/?q=Nile+flood")
    assert page.text("results-heading") == heading
    closest = heading == "Closest passages"
    assert bool(page.find("p", class_="unanswerable", hidden="")) is not closest
    assert "The documents do not seem to answer this" in html  # the tiny corpus holds two
    assert bool(page.find("section", id="results", class_="closest")) is closest


def test_more_results_is_a_plain_link_asking_for_more(client):
    page, _ = get(client, "/?q=river&k=1")
    assert len(result_ids(page)) == 1
    more = page.find("a", **{"data-more": ""})[0]["href"]
    assert more == "/?q=river&k=6"
    assert len(result_ids(get(client, more)[0])) == 6


@pytest.mark.parametrize("k", ["999", "0", "-1", "abc", "5.0"])
def test_an_out_of_range_k_gets_the_apis_message(client, k):
    """The page keeps the API's rule for `k`: a hand-edited link says what is wrong instead of guessing."""
    page, _ = get(client, f"/?q=river&k={k}", status=400)
    api = client.get(f"/api/search?q=river&k={k}")
    assert api.status_code == 400 and api.get_json()["error"]["message"] == K_RULE
    assert K_RULE in page.text("search-error") and not result_ids(page)


def test_the_document_picker_limits_the_search(client):
    page, _ = get(client, "/?q=river&document=mountains")
    assert page.find("select", name="document", id="document")
    assert page.find("option", value="")  # "All documents"
    assert page.find("option", value="mountains", selected="")
    assert {e.words for e in page.find("span", **{"data-field": "document_title"})} == {"Notes on Mountains"}


# ---------------------------------------------------------------- the documents and the reader


def test_documents_lists_each_document_with_its_section_count(client, app):
    _, html = get(client, "/documents")
    for doc in index_holder(app).get().index.documents.values():
        assert f'href="/documents/{doc.id}"' in html and doc.title in html
        assert f"{len(doc.sections)} sections" in html


def test_reader_has_title_byline_contents_and_an_anchor_per_passage(client, app):
    page, _ = get(client, "/documents/rivers")
    index = index_holder(app).get().index
    doc = index.documents["rivers"]
    assert page.text("doc-title") == doc.title and doc.byline and page.find("p", class_="byline")[0].words == doc.byline
    anchors = [a["href"][1:] for a in page.find("a") if a.attrs.get("href", "").startswith("#s-")]
    assert len(anchors) == len(doc.sections) and all(page.find("section", id=a) for a in anchors)
    first, last = index.document_ranges["rivers"]
    assert [a["id"] for a in page.find("span", class_="passage")] == [f"c-{c.chunk}" for c in index.chunks[first:last]]
    assert not page.find("mark")


def test_reader_marks_the_answering_sentence_of_the_question(client):
    _, html = get(client, "/documents/rivers?q=Nile+flood")
    assert re.search(r'id="c-\d+"><mark>Farmers along the Nile depend on its yearly flood\.</mark>', html)
    assert 'href="/?q=Nile+flood"' in html  # back to the results


def test_an_unknown_document_is_a_friendly_404(client):
    _, html = get(client, "/documents/nowhere", status=404)
    assert "There is no document called “nowhere”" in html


def test_reader_keeps_the_passages_of_a_paragraph_in_one_paragraph(app):
    doc = index_holder(app).get().index.documents["rivers"]
    chunks = chunk_document(doc, max_words=8)  # several passages per paragraph
    sections = reader_sections(doc, chunks, {})
    shown = [(i, p.number, [x.chunk for x in p.passages]) for i, s in enumerate(sections) for p in s.paragraphs]
    expected = [(key[0], key[1], [c.chunk for c in group])
                for key, group in groupby(chunks, key=lambda c: (c.section_index, c.paragraph))]
    assert shown == expected and any(len(passages) > 1 for *_, passages in shown)


def test_marked_segments_split_text_at_the_marks():
    assert marked_segments("abcdef", 10, [{"start": 12, "end": 14}]) == [("ab", False), ("cd", True), ("ef", False)]
    assert marked_segments("abc", 10, [{"start": 8, "end": 11}]) == [("a", True), ("bc", False)]
    assert marked_segments("abc", 10, []) == [("abc", False)]


# ---------------------------------------------------------------- what is served


PAGES = ["/", "/?q=Nile+flood", "/?q=", "/documents", "/documents/rivers?q=Nile+flood", "/documents/nowhere"]


@pytest.mark.parametrize("url", PAGES)
def test_pages_have_no_inline_code_and_only_local_assets(client, url):
    response = client.get(url)
    page = Page(response.get_data(as_text=True))
    assert page.inline_code == []
    assets = [a["src"] for a in page.find("script")] + [a["href"] for a in page.find("link")]
    assert assets and all(a.startswith("/static/") for a in assets)
    policy = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in policy and "script-src 'self'" in policy


def test_every_asset_is_served_and_under_100_kb(client):
    assets = [p for p in (WEB / "static").rglob("*") if p.is_file()]
    assert assets
    for path in assets:
        response = client.get("/static/" + path.relative_to(WEB / "static").as_posix())
        assert response.status_code == 200 and len(response.data) < ASSET_LIMIT_BYTES, path.name
