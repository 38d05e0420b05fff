"""The web experience in a real headless Chromium (Debian's /usr/bin/chromium) against a real `qa serve`.

One browser for the session, a fresh context per test. Every test's pages are watched: a request leaving the
server's origin, an uncaught script error or a Content-Security-Policy violation fails the test at teardown.
Screenshots go to artifacts/screenshots/ (ignored by git).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import pytest

from qa.pages import EMPTY_QUERY

from conftest import ROOT, S300

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.model]

VIEWPORTS = {"1440": {"width": 1440, "height": 900}, "375": {"width": 375, "height": 812}}
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
XSS = "<script>alert(1)</script>"
UNANSWERABLE = "What is the recipe for chocolate cake?"
DOCUMENT = "russian-iranian-relations"
TIMEOUT_MS = 15_000


@dataclass
class Tab:
    """A page in its own browser context, with every request it made and every problem it reported."""

    page: sync_api.Page
    origin: str
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def watch(self) -> None:
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        self.page.on("console", lambda message: self.problems.append(message.text)
                     if "Content Security Policy" in message.text else None)

    def foreign_requests(self) -> list[str]:
        return [url for url in self.requests if origin_of(url) != self.origin and not url.startswith("data:")]


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture
def open_tab(browser, live_server):
    """open_tab(viewport="1440", **context_options) -> Tab, at the live server's search page."""
    opened: list[tuple[object, Tab]] = []

    def open_(viewport: str = "1440", path: str = "/", **options) -> Tab:
        context = browser.new_context(viewport=VIEWPORTS[viewport], base_url=live_server, **options)
        context.set_default_timeout(TIMEOUT_MS)
        tab = Tab(context.new_page(), origin_of(live_server))
        tab.watch()
        opened.append((context, tab))
        tab.page.goto(path)
        return tab

    yield open_
    for context, tab in opened:
        context.close()
        assert tab.foreign_requests() == [], "requests left the page's origin"
        assert tab.problems == [], "script errors or CSP violations"


def search_box(page):
    return page.get_by_role("searchbox", name="Your question")


def ask(page, question: str) -> None:
    """Type a question in the box and press Enter, as a reader would."""
    box = search_box(page)
    box.click()
    box.press_sequentially(question)
    box.press("Enter")


def first_result(page):
    return page.locator("#results li.result").first


def wait_for_results(page, question: str) -> None:
    expect(page).to_have_url(re.compile(re.escape("?q=" + quote(question, safe="")).replace("%20", r"(%20|\+)")))
    expect(first_result(page)).to_be_visible()
    expect(page.locator("#results")).not_to_have_attribute("aria-busy", "true")


def screenshot(page, name: str, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def assert_fits_the_width(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"


def read_in_context(page):
    """Follow the first result's "Read in context" link; returns the cited passage in the reader."""
    first_result(page).get_by_role("link", name="Read in context").click()
    expect(page).to_have_url(re.compile(rf"/documents/{DOCUMENT}\?q=[^#]+#c-\d+$"))
    return page.locator("#" + page.url.rsplit("#", 1)[1])


# ---------------------------------------------------------------- a question, its answer, its context


def test_a_question_finds_the_arms_sales_passage_and_shows_it_in_context(open_tab):
    page = open_tab().page
    expect(search_box(page)).to_be_focused()
    ask(page, S300)
    wait_for_results(page, S300)
    expect(search_box(page)).to_have_value(S300)
    expect(page.get_by_role("heading", name="Answers")).to_be_visible()
    expect(first_result(page).locator("cite")).to_contain_text("Arms Sales › ¶")
    expect(first_result(page).locator("blockquote mark")).to_have_count(1)

    passage = read_in_context(page)
    expect(passage).to_be_in_viewport()
    assert passage.evaluate("el => el.matches(':target')")
    mark = passage.locator("mark")
    expect(mark).to_be_visible()
    assert mark.evaluate("el => getComputedStyle(el).backgroundColor") != "rgba(0, 0, 0, 0)"
    assert passage.evaluate("el => getComputedStyle(el).backgroundColor") != "rgba(0, 0, 0, 0)"

    page.go_back()
    wait_for_results(page, S300)
    expect(search_box(page)).to_have_value(S300)


def test_the_back_button_walks_back_through_searches(open_tab):
    page = open_tab().page
    ask(page, S300)
    wait_for_results(page, S300)
    expect(page.locator("#results li.result")).to_have_count(5)
    page.get_by_role("link", name="More results").click()
    expect(page).to_have_url(re.compile(r"&k=10$"))
    expect(page.locator("#results li.result")).to_have_count(10)
    expect(page.locator("#r-6")).to_be_focused()

    page.go_back()
    expect(page).not_to_have_url(re.compile(r"k=10"))
    expect(page.locator("#results li.result")).to_have_count(5)
    page.go_back()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(search_box(page)).to_have_value("")
    expect(page.get_by_role("heading", name="Try asking")).to_be_visible()
    expect(page.locator("#results")).to_be_hidden()


def test_an_example_question_runs_when_clicked(open_tab):
    page = open_tab().page
    example = page.locator("#examples a").first
    question = example.inner_text()
    example.click()
    wait_for_results(page, question)
    expect(search_box(page)).to_have_value(question)


def test_an_unanswerable_question_shows_the_closest_passages_apart(open_tab):
    page = open_tab().page
    ask(page, UNANSWERABLE)
    wait_for_results(page, UNANSWERABLE)
    expect(page.get_by_text("The document does not seem to answer this")).to_be_visible()
    expect(page.get_by_role("heading", name="Closest passages")).to_be_visible()
    expect(page.locator("#results")).to_have_class(re.compile(r"\bclosest\b"))
    expect(page.get_by_text(re.compile(r"The document may not answer this \(confidence \d+%\)"))).to_be_visible()
    screenshot(page, "closest-1440")


def test_a_misspelt_question_says_what_was_searched_and_how_sure(open_tab):
    page = open_tab().page
    ask(page, "wen did russia deliverd the s300")
    wait_for_results(page, "wen did russia deliverd the s300")
    expect(page.get_by_text("Showing results for")).to_be_visible()
    expect(page.locator(".corrected strong")).to_have_text("wen did russia delivery the s300")
    expect(page.locator(".confidence")).to_have_text(
        re.compile(r"The document (answers this directly|may not answer this) \(confidence \d+%\)\."))
    search_box(page).fill("")
    ask(page, "When did Russia deliver the S-300 to Iran?")
    wait_for_results(page, "When did Russia deliver the S-300 to Iran?")
    expect(page.get_by_text("Showing results for")).to_be_hidden()


def test_an_empty_question_gets_a_friendly_message(open_tab):
    page = open_tab().page
    search_box(page).press("Enter")
    expect(page.get_by_role("alert")).to_have_text(EMPTY_QUERY)
    expect(page.locator("#results")).to_be_hidden()


def test_the_citation_is_copied_to_the_clipboard(open_tab):
    page = open_tab(permissions=["clipboard-read", "clipboard-write"]).page
    ask(page, S300)
    wait_for_results(page, S300)
    first_result(page).get_by_role("button", name="Copy citation").click()
    expect(first_result(page).get_by_role("button", name="Copied")).to_be_visible()
    citation = page.evaluate("navigator.clipboard.readText()")
    assert re.fullmatch(rf"Russian-Iranian Relations: A Watchful Partnership, Arms Sales › ¶ \d+\. "
                        rf"http://127\.0\.0\.1:\d+/documents/{DOCUMENT}#c-\d+", citation), citation


# ---------------------------------------------------------------- keyboard, safety, no JavaScript


def test_the_page_works_with_the_keyboard_alone(open_tab):
    page = open_tab(path="/documents").page
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    expect(page.get_by_role("link", name="Skip to content")).to_be_in_viewport()

    page.goto("/")
    expect(search_box(page)).to_be_focused()
    page.keyboard.type(S300)
    page.keyboard.press("Enter")
    wait_for_results(page, S300)
    for _ in range(6):
        page.keyboard.press("Tab")
        if page.evaluate("!!document.activeElement.closest('#r-1') && document.activeElement.tagName === 'A'"):
            break
    focused = page.locator(":focus")
    expect(focused).to_have_text("Read in context")
    assert focused.evaluate("el => getComputedStyle(el).outlineStyle") != "none", "focus is not visible"
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#c-\d+$"))


def test_a_question_with_markup_is_shown_as_text(open_tab):
    page = open_tab().page
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    ask(page, XSS)
    wait_for_results(page, XSS)
    expect(search_box(page)).to_have_value(XSS)
    expect(page).to_have_title(f"{XSS} · Ask the document")

    page.goto("/?q=" + quote(XSS))
    expect(search_box(page)).to_have_value(XSS)
    page.goto(f"/documents/{DOCUMENT}?q={quote(XSS)}")
    expect(page.locator(".notice.question q")).to_have_text(XSS)
    assert page.locator("script").count() == 0 and dialogs == []


def test_without_javascript_the_form_and_more_results_still_work(open_tab):
    page = open_tab(java_script_enabled=False).page
    ask(page, S300)
    wait_for_results(page, S300)
    expect(first_result(page).locator("cite")).to_contain_text("Arms Sales")
    expect(page.get_by_role("button", name="Copy citation")).to_have_count(0)  # needs the script
    page.get_by_role("link", name="More results").click()
    expect(page.locator("#results li.result")).to_have_count(10)


def test_no_request_leaves_the_origin(open_tab, live_server):
    tab = open_tab()
    page = tab.page
    ask(page, S300)
    wait_for_results(page, S300)
    read_in_context(page)
    page.get_by_role("link", name="Arms Sales").click()
    page.get_by_role("navigation", name="Site").get_by_role("link", name="Documents").click()
    expect(page.get_by_role("heading", name="Documents")).to_be_visible()
    paths = {urlsplit(url).path for url in tab.requests}
    assert {"/", "/static/style.css", "/static/search.js", "/api/search", f"/documents/{DOCUMENT}",
            "/documents"} <= paths
    assert tab.foreign_requests() == []


# ---------------------------------------------------------------- looks


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_screenshots_of_search_results_and_reader(open_tab, viewport):
    page = open_tab(viewport).page
    assert_fits_the_width(page)
    screenshot(page, f"search-{viewport}")
    ask(page, S300)
    wait_for_results(page, S300)
    assert_fits_the_width(page)
    screenshot(page, f"results-{viewport}")
    passage = read_in_context(page)
    expect(passage).to_be_in_viewport()
    assert_fits_the_width(page)
    screenshot(page, f"reader-{viewport}", full_page=False)
