"""The PDF, Word and web-page readers on real files, and a PDF generated with known headings and page breaks.

Real files (tests/fixtures/formats/README.md says where they come from) test what the readers find on documents no
one here made; the generated PDF lets page and section citations be asserted exactly.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import FakeEmbedder
from reportlab.lib.pagesizes import LETTER
from reportlab.lib.pdfencrypt import StandardEncryption
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen import canvas

from qa.documents import read_corpus
from qa.formats import READERS, UnreadableDocument
from qa.formats.reader import page_span
from qa.index import build, load, stale_reasons
from qa.search import Searcher

FORMATS = Path(__file__).resolve().parent / "fixtures" / "formats"
HEADER = "Watchful Partnership Quarterly"

# (kind, text) in reading order; "page" forces a page break. The long paragraph of "Arms Sales" runs from page 2
# onto page 3 in the middle of a sentence.
REPORT = [
    ("title", "Russian Arms and Oil"),
    ("byline", "By Jane Analyst"),
    ("paragraph", ("Moscow and Tehran have drawn closer over the last decade. Their partnership is watchful rather "
                   "than warm, and each side keeps its own counsel on the largest questions.")),
    ("heading", "Background"),
    ("paragraph", ("Relations between the two states were cool for most of the twentieth century. The end of the "
                   "Soviet Union opened a period of trade in reactors, rifles and grain.")),
    ("page", ""),
    ("heading", "Arms Sales"),
    ("paragraph", ("Russia is the largest supplier of weapons to Iran. Deliveries have included fighter aircraft, "
                   "submarines and air defence systems.")),
    ("paragraph", " ".join(f"Sentence {n} of the long paragraph says that the S-300 air defence system was a "
                           f"subject of negotiation for many years." for n in range(1, 46))),
    ("heading", "Oil Trade"),
    ("paragraph", ("Both countries export oil and gas, so they compete more than they trade in energy. Swap "
                   "arrangements across the Caspian Sea are the exception.")),
]

SIZES = {"title": 22, "heading": 15, "byline": 11, "paragraph": 11}
FONTS = {"title": "Helvetica-Bold", "heading": "Helvetica-Bold", "byline": "Times-Italic", "paragraph": "Times-Roman"}
TOP, BOTTOM, LEFT, WIDTH = 720, 80, 72, 468


def wrap(text: str, font: str, size: float) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and stringWidth(candidate, font, size) > WIDTH:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line]


def make_report(encrypt: str | None = None) -> tuple[bytes, list[str]]:
    """The REPORT as a PDF with a running header and a "Page n of N" footer; also the first body line of each
    page (where the page starts in the extracted text)."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=LETTER,
                        encrypt=StandardEncryption(encrypt, canPrint=0) if encrypt else None)
    page_firsts: list[str] = []
    pages = 3

    def furniture(number: int) -> None:
        pdf.setFont("Helvetica", 8)
        pdf.drawString(LEFT, 760, HEADER)
        pdf.drawString(LEFT + WIDTH - 60, 40, f"Page {number} of {pages}")

    y, number = TOP, 1
    furniture(number)

    def new_page() -> None:
        nonlocal y, number
        pdf.showPage()
        number += 1
        furniture(number)
        y = TOP

    for kind, text in REPORT:
        if kind == "page":
            new_page()
            continue
        size, font = SIZES[kind], FONTS[kind]
        y -= size * (1.2 if kind != "heading" else 1.6)
        for line in wrap(text, font, size):
            if y < BOTTOM:
                new_page()
            if len(page_firsts) < number:
                page_firsts.append(line)
            pdf.setFont(font, size)
            pdf.drawString(LEFT, y, line)
            y -= size * 1.25
        y -= size * 0.8  # space after a paragraph
    assert number == pages
    pdf.showPage()
    pdf.save()
    return out.getvalue(), page_firsts


@pytest.fixture(scope="module")
def report() -> tuple[bytes, list[str]]:
    return make_report()


def image_only_pdf() -> bytes:
    """A scan-like page: shapes drawn, no text at all."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=LETTER)
    for row in range(20):
        pdf.rect(LEFT, 700 - row * 30, WIDTH * (row % 5 + 1) / 5, 12, fill=1)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


# ---------------------------------------------------------------- the generated PDF: exact pages and sections


def test_pdf_pages_start_where_each_page_begins(report):
    raw, page_firsts = report
    extracted = READERS[".pdf"](raw)
    assert len(extracted.pages) == 3
    for start, first_line in zip(extracted.pages, page_firsts):
        assert extracted.text[start:].startswith(first_line)


def test_pdf_title_byline_and_sections_by_type(report):
    layout = READERS[".pdf"](report[0]).layout
    assert layout.title == "Russian Arms and Oil"
    assert layout.byline == "By Jane Analyst"
    assert [s.title for s in layout.sections] == ["Introduction", "Background", "Arms Sales", "Oil Trade"]


def test_pdf_running_header_and_page_numbers_are_not_text(report):
    text = READERS[".pdf"](report[0]).text
    assert HEADER not in text
    assert not re.search(r"Page \d of 3", text)


def test_pdf_paragraph_runs_across_the_page_break(report):
    extracted = READERS[".pdf"](report[0])
    long_paragraph = next(p for p in extracted.layout.paragraphs
                          if extracted.text[p.start:p.end].startswith("Sentence 1 of"))
    assert extracted.text[long_paragraph.start:long_paragraph.end].endswith("Sentence 45 of the long paragraph says "
                                                                            "that the S-300 air defence system was "
                                                                            "a subject of negotiation for many years.")
    assert page_span(extracted.pages, long_paragraph.start, long_paragraph.end) == (2, 3)
    assert long_paragraph.number == 2  # ¶ 2 of Arms Sales


def test_page_span():
    pages = (0, 100, 250)
    assert page_span(pages, 0, 99) == (1, None)
    assert page_span(pages, 100, 250) == (2, None)  # ends right before page 3 starts
    assert page_span(pages, 120, 251) == (2, 3)
    assert page_span(pages, 260, 300) == (3, None)
    assert page_span((), 0, 10) == (None, None)


def test_search_results_from_a_pdf_carry_pages_and_slice_the_text(report, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "report.pdf").write_bytes(report[0])
    build(corpus, tmp_path / "index", FakeEmbedder())
    searcher = Searcher(load(tmp_path / "index"), FakeEmbedder())
    response = searcher.search("Which sentence mentions negotiation of the S-300 air defence system?", k=10)
    doc = searcher.index.documents["report"]
    assert response["results"]
    for r in response["results"]:
        assert doc.text[r["start"]:r["end"]] == r["text"]
        assert (r["page"], r["page_end"]) == page_span(doc.pages, r["start"], r["end"])
        if r["section"] == "Arms Sales" and r["paragraph"] == 2:
            assert r["page"] in (2, 3)
    oil = searcher.search("swap arrangements across the Caspian", k=1)["results"][0]
    assert (oil["section"], oil["paragraph"], oil["page"], oil["page_end"]) == ("Oil Trade", 1, 3, None)


def test_unchanged_pdf_is_not_extracted_again(report, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "report.pdf").write_bytes(report[0])
    build(corpus, tmp_path / "index", FakeEmbedder())
    (corpus / "notes.txt").write_text("Notes\n\nA short note on nothing in particular.\n", encoding="utf-8")
    extracted: list[int] = []

    def counting_reader(raw: bytes):
        extracted.append(len(raw))
        return pdf_reader(raw)

    pdf_reader = READERS[".pdf"]
    monkeypatch.setitem(READERS, ".pdf", counting_reader)
    report2 = build(corpus, tmp_path / "index", FakeEmbedder())
    assert report2.unchanged == ["report"] and report2.added == ["notes"]
    assert extracted == []  # neither extracted nor embedded again
    (corpus / "report.pdf").write_bytes(make_report(encrypt=None)[0] + b"\n")  # changed bytes: read again
    report3 = build(corpus, tmp_path / "index", FakeEmbedder())
    assert report3.changed == ["report"] and len(extracted) == 1


# ---------------------------------------------------------------- bad PDFs


@pytest.mark.parametrize(("make", "reason"), [
    (lambda: make_report(encrypt="secret")[0], "encrypted PDF"),
    (lambda: make_report()[0][:3000], "damaged or truncated PDF"),
    (lambda: (FORMATS / "issue-982-example.pdf").read_bytes()[:400_000], "damaged or truncated PDF"),
    (image_only_pdf, "no text layer; OCR is not supported"),
])
def test_bad_pdf_is_unreadable_with_its_reason(make, reason):
    with pytest.raises(UnreadableDocument, match=re.escape(reason)):
        READERS[".pdf"](make())


def test_build_skips_bad_files_by_name_and_serves_the_rest(report, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.pdf").write_bytes(report[0])
    (corpus / "scan.pdf").write_bytes(image_only_pdf())
    (corpus / "locked.pdf").write_bytes(make_report(encrypt="secret")[0])
    (corpus / "broken.docx").write_bytes((FORMATS / "sample.docx").read_bytes()[:5000])
    result = build(corpus, tmp_path / "index", FakeEmbedder())
    reasons = {s.path: s.reason for s in result.skipped}
    assert sorted(reasons) == ["broken.docx", "locked.pdf", "scan.pdf"]
    assert reasons["scan.pdf"] == "no text layer; OCR is not supported"
    assert reasons["locked.pdf"].startswith("encrypted PDF")
    assert reasons["broken.docx"].startswith("not a readable Word file")
    index = load(tmp_path / "index")
    assert list(index.documents) == ["good"]
    embedder = FakeEmbedder()
    assert stale_reasons(index.manifest, corpus, embedder.model_id, embedder.model_version) == []  # still served
    (corpus / "scan.pdf").write_bytes(make_report()[0])
    assert stale_reasons(index.manifest, corpus, embedder.model_id, embedder.model_version) == [
        "file changed: scan.pdf"]


# ---------------------------------------------------------------- real PDFs


def sections_of(name: str) -> list[str]:
    return [s.title for s in READERS[".pdf"]((FORMATS / name).read_bytes()).layout.sections]


def test_outline_gives_the_sections_of_a_two_column_paper():
    extracted = READERS[".pdf"]((FORMATS / "issue-982-example.pdf").read_bytes())
    titles = [s.title for s in extracted.layout.sections]
    assert titles[:5] == ["Introduction", "I Introduction", "II Basics of Machine Learning", "III Image Data",
                          "III-A Google DeepDream"]
    assert "VI Discussion" in titles and "A-D Linux Code, 2" in titles
    start = extracted.layout.sections[titles.index("III Image Data")].start
    assert extracted.text[start:].startswith("III. IMAGE DATA")  # at its place on its page (page 2)
    assert page_span(extracted.pages, start, start + 1) == (2, None)


def test_double_spaced_transcript_lines_make_paragraphs_not_one_each():
    extracted = READERS[".pdf"]((FORMATS / "scotus-transcript-p1.pdf").read_bytes())
    paragraphs = [extracted.text[p.start:p.end] for p in extracted.layout.paragraphs]
    assert "The above-entitled matter came on for oral argument before the Supreme Court of the United States at " \
           "1:01 p.m." in paragraphs
    assert not re.search(r"(^|\n)\d{1,2}(\n|$)", extracted.text)  # the page number at its foot


def test_type_headings_of_a_word_made_report_leave_out_table_cells_and_diagram_labels():
    extracted = READERS[".pdf"]((FORMATS / "GeoBase_NHNC1_Data_Model_UML_EN.pdf").read_bytes())
    titles = [s.title for s in extracted.layout.sections]
    assert extracted.layout.title == "National Hydro Network, Canada, Level 1 Data Model"
    for heading in ("REVISION HISTORY", "1 Overview", "2 LRS", "2.1 LRS model", "3 Model"):
        assert heading in titles
    for label in ("Date Version Description", "Key word Description", "Hydro", "Events", "Optional",
                  "Mandatory Optional"):
        assert label not in titles
    assert len(extracted.pages) == 19
    assert "GeoBase® iii" not in extracted.text  # the running footer with its page number
    assert "National Hydro Network, Data Model – Edition 1.0" not in extracted.text  # the running header


def test_three_column_register_keeps_reading_order_and_drops_running_headers():
    extracted = READERS[".pdf"]((FORMATS / "federal-register-2020-17221.pdf").read_bytes())
    titles = [s.title for s in extracted.layout.sections]
    for heading in ("Comments Invited", "Proposed AD Requirements", "Costs of Compliance",
                    "Authority for This Rulemaking", "Regulatory Findings", "PART 39—AIRWORTHINESS DIRECTIVES"):
        assert heading in titles
    assert "Federal Register / Vol. 85" not in extracted.text
    assert "jbell on DSKJLSW7X2PROD" not in extracted.text  # a stamp set sideways in the margin of every page
    assert "persons an opportunity to participate in the rule making prior to the adoption" in extracted.text
    assert len(extracted.pages) == 15 and list(extracted.pages) == sorted(extracted.pages)


# ---------------------------------------------------------------- Word and web pages


def test_word_headings_from_styles_and_their_bases_without_the_running_header():
    extracted = READERS[".docx"]((FORMATS / "sample.docx").read_bytes())
    assert extracted.layout.title == "Sanctions After Ukraine"
    assert [s.title for s in extracted.layout.sections] == [
        "1. Background", "1.1 The oil price cap", "2. Custom-styled heading"]
    assert "running header" not in extracted.text
    assert "Measure | Effect" in extracted.text
    assert extracted.pages == ()


def test_broken_word_file_is_unreadable():
    with pytest.raises(UnreadableDocument, match="not a readable Word file"):
        READERS[".docx"]((FORMATS / "sample.docx").read_bytes()[:5000])


def test_web_page_main_text_only_with_headings_as_sections():
    extracted = READERS[".html"]((FORMATS / "sample.html").read_bytes())
    assert extracted.layout.title == "Sanctions After Ukraine: What Works"
    assert [s.title for s in extracted.layout.sections] == [
        "Summary", "1. Background", "1.1 The oil price cap", "2. Recommendations"]
    for furniture in ("cookies", "Research", "Related research", "All rights reserved"):
        assert furniture not in extracted.text
    assert "First bullet on export controls." in extracted.text and "Cap | Moderate" in extracted.text


def test_short_web_page_is_read_without_its_navigation():
    page = (b"<html><body><nav>Home</nav><main><h1>Short Note</h1><h2>Point</h2><p>One line.</p></main>"
            b"<footer>Footer text</footer></body></html>")
    extracted = READERS[".htm"](page)
    assert extracted.layout.title == "Short Note"
    assert [s.title for s in extracted.layout.sections] == ["Point"]
    assert extracted.text == "Short Note\n\nPoint\n\nOne line."


def test_web_page_of_links_falls_back_to_the_main_element():
    page = (b"<html><body><nav><a href='/'>Home</a></nav><main><h1>Reading List</h1><h2>Papers</h2><ul>"
            b"<li><a href='/a'>Arms sales and the S-300</a></li><li><a href='/b'>Oil swaps across the Caspian</a></li>"
            b"</ul></main><footer>Footer text</footer></body></html>")
    extracted = READERS[".html"](page)
    assert extracted.layout.title == "Reading List"
    assert [s.title for s in extracted.layout.sections] == ["Papers"]
    assert extracted.text.endswith("Arms sales and the S-300\n\nOil swaps across the Caspian")
    assert "Footer" not in extracted.text and "Home" not in extracted.text


def test_web_page_without_main_text_is_unreadable():
    with pytest.raises(UnreadableDocument, match="no main text"):
        READERS[".html"](b"<html><body><nav>Home</nav></body></html>")


def test_every_format_in_one_corpus_slices_its_own_text(report, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "report.pdf").write_bytes(report[0])
    for name in ("sample.docx", "sample.html"):
        shutil.copy(FORMATS / name, corpus / name.replace("sample", name.split(".")[1]))
    documents = {d.id: d for d in read_corpus(corpus)}
    assert sorted(documents) == ["docx", "html", "report"]
    for doc in documents.values():
        for section in doc.sections:
            assert doc.text[section.start:section.end].strip()
        for paragraph in doc.paragraphs:
            assert doc.text[paragraph.start:paragraph.end] == doc.text[paragraph.start:paragraph.end].strip()
    assert json.dumps([d.pages for d in documents.values()])  # pages are plain integers


# ---------------------------------------------------------------- pages in the API, the web page and the CLI


@pytest.fixture
def report_client(report, tmp_path):
    from qa.app import create_app

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "report.pdf").write_bytes(report[0])
    (corpus / "notes.txt").write_text("Notes\n\nA short note about rivers and their floods.\n", encoding="utf-8")
    build(corpus, tmp_path / "index", FakeEmbedder())
    app = create_app({"TESTING": True, "CORPUS": str(corpus), "INDEX": str(tmp_path / "index"),
                      "EMBEDDER": FakeEmbedder()})
    return app.test_client()


def test_api_serves_page_starts_and_result_pages(report_client):
    doc = report_client.get("/api/documents/report").get_json()
    assert len(doc["pages"]) == 3 and doc["pages"][0] == 0
    assert report_client.get("/api/documents/notes").get_json()["pages"] is None
    results = report_client.get("/api/search", query_string={"q": "swap arrangements across the Caspian",
                                                              "k": 10}).get_json()["results"]
    oil = next(r for r in results if r["section"] == "Oil Trade")
    assert (oil["page"], oil["page_end"]) == (3, None)
    assert {(r["page"], r["page_end"]) for r in results if r["section"] == "Arms Sales" and r["paragraph"] == 2} \
        >= {(2, None), (2, 3), (3, None)}  # the long paragraph's passages, one across the page break
    note = report_client.get("/api/search", query_string={"q": "rivers", "document": "notes"}).get_json()
    assert [(r["page"], r["page_end"]) for r in note["results"]] == [(None, None)]


def test_web_page_cites_the_page_and_the_reader_numbers_pages_in_the_margin(report_client):
    html = report_client.get("/", query_string={"q": "swap arrangements across the Caspian"}).get_data(as_text=True)
    assert re.search(r"p\.&nbsp;3 · </span><span data-field=\"section\">Oil Trade</span> › ¶", html)
    reader = report_client.get("/documents/report").get_data(as_text=True)
    for n in (1, 2, 3):
        assert f'id="page-{n}" title="Page {n} begins here">p.&nbsp;{n}</span>' in reader
    # Page 3 begins inside the long paragraph (¶ 2 of Arms Sales), not at a paragraph of its own.
    page_3 = reader.index('id="page-3"')
    assert reader.rfind('title="Paragraph 2 of Arms Sales"', 0, page_3) > reader.rfind('class="paragraph"', 0, page_3)


@pytest.mark.model
def test_cli_cites_page_and_section_with_the_real_model(report, tmp_path):
    from click.testing import CliRunner

    from qa.cli import main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "report.pdf").write_bytes(report[0])
    (corpus / "scan.pdf").write_bytes(image_only_pdf())
    runner = CliRunner()
    index = tmp_path / "index"
    result = runner.invoke(main, ["build", "--corpus", str(corpus), "--index", str(index)])
    assert result.exit_code == 0, result.output
    assert "skipped scan.pdf: no text layer; OCR is not supported" in result.stderr
    result = runner.invoke(main, ["search", "--corpus", str(corpus), "--index", str(index), "--k", "1",
                                  "Do Russia and Iran trade oil, or compete?"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("1. Russian Arms and Oil › p. 3 · Oil Trade › ¶ 1  (score")


@pytest.mark.browser
@pytest.mark.server
@pytest.mark.model
def test_browser_shows_the_page_in_the_citation_and_page_numbers_in_the_reader_margin(report, tmp_path, browser):
    """A real `qa serve` over the generated PDF, read in Chromium: the script-made result cites the page, and the
    reader sets each page number in the right margin, level with the line where the page begins."""
    import os
    import subprocess
    import sys

    sync_api = pytest.importorskip("playwright.sync_api")
    from conftest import free_port, wait_for

    from qa.cli import run_build

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "report.pdf").write_bytes(report[0])
    run_build(str(corpus), str(tmp_path / "index"))
    port = free_port()
    env = {**os.environ, "QA_CORPUS": str(corpus), "QA_INDEX": str(tmp_path / "index")}
    server = subprocess.Popen([sys.executable, "-m", "qa.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1", "--no-build"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/api/health")
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        try:
            page.goto(base + "/")
            page.get_by_role("searchbox").fill("Do Russia and Iran trade oil, or compete?")
            page.keyboard.press("Enter")
            first = page.locator(".result").first.locator("cite")
            sync_api.expect(first).to_have_text("p.\u00a03 · Oil Trade › ¶\u00a01", timeout=15_000)
            page.goto(base + "/documents/report")
            number = page.locator("#page-3")
            sync_api.expect(number).to_be_visible()
            paragraph = page.locator(".paragraph", has=number)
            number_box, paragraph_box = number.bounding_box(), paragraph.bounding_box()
            assert number_box["x"] >= paragraph_box["x"] + paragraph_box["width"]  # in the margin, not the text
            assert paragraph_box["y"] < number_box["y"] < paragraph_box["y"] + paragraph_box["height"]
        finally:
            page.close()
    finally:
        server.terminate()
        server.wait(timeout=15)
