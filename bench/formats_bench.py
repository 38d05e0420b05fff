"""PDF extraction speed on real PDFs, and the whole build of a long report.

    python bench/formats_bench.py [--pages 137] [--no-build]

Rows (one JSON object a line):
- `extract`: for each real PDF in tests/fixtures/formats and the bundled paper as a PDF (pandoc + LibreOffice, as in
  bench/formats_eval.py): pages per second of the PDF reader (text, pages, sections, furniture; best of 3 runs), and
  of PDFium alone loading each page's text (`pdfium_floor`), the part no reader on PDFium can avoid. The
  target is at least 100 pages/s for the reader.
- `build`: a report of about `--pages` pages (the paper's paragraphs repeated under numbered part headings, made a PDF
  by LibreOffice) built with `index.build` and the real model, as `qa build` does: the seconds of extraction alone
  and of the whole build.

The machine's load average is printed with the figures: on a shared machine every figure falls with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pypdfium2 as pdfium
from formats_eval import PAPER, convert, markdown_of

from qa.documents import read_corpus
from qa.formats import READERS
from qa.index import build
from qa.onnx_embedding import build_encoder

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "formats"
RUNS = 3


def pdfium_floor(raw: bytes) -> float:
    began = time.perf_counter()
    document = pdfium.PdfDocument(raw)
    count = len(document)
    for index in range(count):
        page = document[index]
        textpage = page.get_textpage()
        textpage.get_text_range()
        textpage.close()
        page.close()
    document.close()
    return count / (time.perf_counter() - began)


def reader_speed(raw: bytes) -> tuple[int, float]:
    best = float("inf")
    pages = 0
    for _ in range(RUNS):
        began = time.perf_counter()
        pages = len(READERS[".pdf"](raw).pages)
        best = min(best, time.perf_counter() - began)
    return pages, pages / best


def long_report(folder: Path, pages: int, paper_pdf: Path) -> Path:
    """A PDF of about `pages` pages: the paper's paragraphs repeated under numbered part headings."""
    paper_pages = len(pdfium.PdfDocument(str(paper_pdf)))
    paragraphs = markdown_of(PAPER.read_text(encoding="utf-8")).split("\n\n")
    body, part = [paragraphs[0]], 1
    target = len(paragraphs) * pages / paper_pages  # paragraphs, at the paper's paragraphs per page
    while len(body) < target:
        for paragraph in paragraphs[1:]:
            body.append(f"## Part {part}: {paragraph[3:]}" if paragraph.startswith("## ") else paragraph)
            if len(body) >= target:
                break
        part += 1
    markdown = folder / "long-report.md"
    markdown.write_text("\n\n".join(body) + "\n", encoding="utf-8")
    docx = folder / "long-report.docx"
    subprocess.run(["pandoc", str(markdown), "-o", str(docx)], check=True)
    subprocess.run(["soffice", "--headless", "--convert-to", "pdf", "--outdir", str(folder), str(docx)], check=True,
                   capture_output=True, timeout=600)
    return folder / "long-report.pdf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=137)
    parser.add_argument("--no-build", action="store_true", help="only the extraction rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        markdown = work / f"{PAPER.stem}.md"
        markdown.write_text(markdown_of(PAPER.read_text(encoding="utf-8")), encoding="utf-8")
        paper_pdf = convert(markdown, work)[".pdf"]
        for path in [*sorted(FIXTURES.glob("*.pdf")), paper_pdf]:
            raw = path.read_bytes()
            pages, speed = reader_speed(raw)
            floor = max(pdfium_floor(raw) for _ in range(RUNS))
            print(json.dumps({"row": "extract", "file": path.name, "pages": pages, "pages_per_s": round(speed),
                              "pdfium_floor_pages_per_s": round(floor), "load": round(os.getloadavg()[0], 1)}),
                  flush=True)
        if args.no_build:
            return
        report = long_report(work, args.pages, paper_pdf)
        corpus = work / "corpus"
        corpus.mkdir()
        report.rename(corpus / report.name)
        began = time.perf_counter()
        documents = read_corpus(corpus)
        extract_s = time.perf_counter() - began
        with build_encoder(work / "index") as (embedder, extras):
            began = time.perf_counter()
            result = build(corpus, work / "index", embedder, extras=extras)
            build_s = time.perf_counter() - began
        print(json.dumps({"row": "build", "file": "long-report.pdf", "pages": len(documents[0].pages),
                          "sections": len(documents[0].sections), "chunks": result.chunks,
                          "extract_s": round(extract_s, 2), "build_s": round(build_s, 1),
                          "load": round(os.getloadavg()[0], 1)}), flush=True)


if __name__ == "__main__":
    main()
