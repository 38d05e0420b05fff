"""Reading documents: plain-text and Markdown structure, offsets into the text as read."""

from pathlib import Path

import pytest

from qa.documents import CorpusError, corpus_files, decode, read_corpus, scan_corpus
from qa.formats import markdown, plaintext

from conftest import CORPUS

EXPECTED_SECTIONS = [
    "Introduction", "Media and Public Perceptions", "Historical Context", "Military Cooperation and Disagreements",
    "Arms Sales", "Syria", "Prosecuting the War in Syria", "The Limits of Strategic Cooperation",
    "Syria’s Tomorrow and the New Power Brokers", "Iraq", "A Balancing Act in Yemen", "Afghanistan",
    "Central Asia and the Caucasus", "Economic Cooperation and Disagreements", "The Long Road to Cohesion",
    "Bonded by External Forces", "Washington, the JCPOA and a Conservative Tehran", "Between Moscow and Beijing",
    "The Coronavirus and Vaccine Diplomacy", "Cyber Warfare", "Looking Ahead",
]


@pytest.fixture(scope="module")
def paper():
    (doc,) = read_corpus(CORPUS)
    return doc


def test_bundled_document_has_exactly_its_21_sections(paper):
    assert [s.title for s in paper.sections] == EXPECTED_SECTIONS


def test_title_byline_and_image_line_are_not_paragraphs(paper):
    assert paper.title == "Russian-Iranian Relations: A Watchful Partnership"
    assert paper.byline == "By Senior Research Associate, Scott Ferguson"
    texts = [paper.text[p.start:p.end] for p in paper.paragraphs]
    assert not any(t.startswith(("Russian-Iranian Relations:", "By Senior", "40329513812")) for t in texts)
    assert paper.paragraphs[0].start == paper.text.index("The modern relationship")


def test_paragraph_offsets_slice_trimmed_text_inside_their_section(paper):
    for p in paper.paragraphs:
        text = paper.text[p.start:p.end]
        assert text == text.strip() and text
        section = paper.sections[p.section]
        assert section.start <= p.start < p.end <= section.end


def test_paragraphs_are_numbered_from_one_within_each_section(paper):
    by_section = {}
    for p in paper.paragraphs:
        by_section.setdefault(p.section, []).append(p.number)
    assert all(numbers == list(range(1, len(numbers) + 1)) for numbers in by_section.values())


def test_plaintext_heading_rules():
    assert plaintext.is_heading("Arms Sales ")
    assert plaintext.is_heading("Central Asia and the Caucasus\u00a0 ")
    assert not plaintext.is_heading("This is a sentence.")
    assert not plaintext.is_heading("One two three four five six seven eight nine ten eleven twelve thirteen")


def test_text_before_first_heading_is_introduction():
    layout = plaintext.parse("Title Line\n\nSome opening prose that runs on.\n\nNext Part\n\nMore prose here.\n")
    assert layout.title == "Title Line"
    assert [s.title for s in layout.sections] == ["Introduction", "Next Part"]


def test_markdown_levels_title_metadata_tables_and_images():
    text = Path(__file__).with_name("conftest.py").read_text(encoding="utf-8")
    start = text.index('TINY_MARKDOWN = """') + len('TINY_MARKDOWN = """')
    md = text[start:text.index('"""', start)]
    layout = markdown.parse(md)
    assert layout.title == "Notes on Mountains"
    assert [s.title for s in layout.sections] == ["Abstract", "Experiments ::: Measuring Height", "Glaciers"]
    paragraphs = [md[p.start:p.end] for p in layout.paragraphs]
    assert paragraphs == [
        "Mountains are formed by tectonic forces. Erosion wears them down over millions of years.",
        "Everest is the highest mountain above sea level. Its height was measured again in 2020.",
        "Glaciers carve valleys in high mountains and feed rivers in spring.",
    ]


def test_markdown_heading_inside_code_fence_is_text():
    layout = markdown.parse("# T\n\n## A\n\n```\n# not a heading\n```\n")
    assert [s.title for s in layout.sections] == ["A"]
    assert len(layout.paragraphs) == 1


def test_decode_drops_bom_and_normalises_newlines():
    assert decode("\ufeffa\r\nb\rc".encode("utf-8")) == "a\nb\nc"


def test_undecodable_file_is_skipped_not_fatal(tmp_path):
    (tmp_path / "good.txt").write_text("Title\n\nSome text here.\n", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa not utf-8")
    docs = read_corpus(tmp_path)
    assert [d.id for d in docs] == ["good"]
    assert [(s.path, s.reason.split(" (")[0]) for s in scan_corpus(tmp_path).skipped] == [("bad.txt", "not UTF-8 text")]


def test_ids_are_relative_paths_and_collisions_are_errors(tmp_path):
    (tmp_path / "papers").mkdir()
    (tmp_path / "papers" / "x.md").write_text("# X\n\nText.\n", encoding="utf-8")
    assert list(corpus_files(tmp_path)) == ["papers/x"]
    (tmp_path / "papers" / "x.txt").write_text("X\n\nText.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="x.md.*x.txt|x.txt.*x.md"):
        corpus_files(tmp_path)
