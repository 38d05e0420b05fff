"""The dev questions against the bundled paper as PDF, Word and web page, beside the plain text it came from.

    python bench/formats_eval.py [--questions eval/dev.jsonl] [--keep FOLDER]

The paper (`corpus/russian-iranian-relations.txt`) is written out as Markdown (its title, byline, headings and
paragraphs as the plain-text reader finds them), converted by pandoc to `.docx` and `.html`, and the `.docx` by
LibreOffice (`soffice --headless --convert-to pdf`) to `.pdf`: ordinary tools, as a reader would meet the paper.
Each version alone is built with the real model and asked every question (10 results), then scored like `qa eval`.

Evidence strings are exact substrings of the `.txt`; in an extracted text the same words may differ in whitespace
(line joins), quotes, dashes or no-break spaces. Each evidence string is therefore located by a *normalised match*:
both texts are mapped character by character to a normal form (curly quotes to straight, dashes to `-`, U+00A0 and
every whitespace run to one space, soft hyphens dropped), the evidence is found in the normalised text, and the
match is mapped back to offsets in the extracted text. Scoring then uses those offsets.

Page accuracy (PDF): for every question whose first result hits, the page the evidence starts on is found
independently of the reader, in PDFium's raw text of each page (whitespace and hyphens removed on both sides), and
the first result is right when that page lies within its `page`..`page_end`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pypdfium2 as pdfium

from qa.engine import open_searcher
from qa.evaluation import load_jsonl, respond, score
from qa.formats import plaintext
from qa.index import build
from qa.onnx_embedding import build_encoder

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "corpus" / "russian-iranian-relations.txt"
NAME = PAPER.stem
_FOLD = {"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-", "\xa0": " ", "\u00ad": "", "\ufffe": ""}


def markdown_of(text: str) -> str:
    """The paper as Markdown: `#` title, `##` headings, the byline and paragraphs as they are."""
    layout = plaintext.parse(text)
    heads = {s.start: s.title for s in layout.sections}
    parts = [f"# {layout.title}"] if layout.title else []
    if layout.byline:
        parts.append(layout.byline)
    for paragraph in layout.paragraphs:
        section = layout.sections[paragraph.section]
        if paragraph.number == 1 and section.start in heads and section.title != "Introduction":
            parts.append(f"## {section.title}")
        parts.append(" ".join(text[paragraph.start:paragraph.end].split()))
    return "\n\n".join(parts) + "\n"


def convert(markdown: Path, folder: Path) -> dict[str, Path]:
    docx, html = folder / f"{NAME}.docx", folder / f"{NAME}.html"
    subprocess.run(["pandoc", str(markdown), "-o", str(docx)], check=True)
    subprocess.run(["pandoc", str(markdown), "-s", "--metadata", f"pagetitle={NAME}", "-o", str(html)], check=True)
    subprocess.run(["soffice", "--headless", "--convert-to", "pdf", "--outdir", str(folder), str(docx)], check=True,
                   capture_output=True, timeout=300)
    return {".docx": docx, ".html": html, ".pdf": folder / f"{NAME}.pdf"}


def normalised(text: str, drop_spaces: bool = False) -> tuple[str, list[int]]:
    """`text` in normal form, and for each of its characters the offset in `text` it came from."""
    out: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        ch = _FOLD.get(ch, ch)
        if not ch:
            continue
        if ch.isspace() or (drop_spaces and ch == "-"):
            if drop_spaces or (out and out[-1] == " "):
                continue
            ch = " "
        out.append(ch)
        where.append(i)
    return "".join(out), where


def locate(text: str, evidence: str) -> tuple[int, int] | None:
    norm, where = normalised(text)
    target = normalised(evidence)[0].strip()
    at = norm.find(target)
    if at < 0:
        return None
    return where[at], where[at + len(target) - 1] + 1


def relocated(items: list[dict], text: str) -> tuple[list[dict], int]:
    """Items whose evidence strings are replaced by their exact text in `text`; and how many were not found."""
    missing = 0
    out = []
    for item in items:
        evidence = []
        for e in item.get("evidence") or []:
            span = locate(text, e)
            if span is None:
                missing += 1
            else:
                evidence.append(text[span[0]:span[1]])
        out.append({**item, "evidence": evidence} if evidence or not item.get("evidence") else
                   {**item, "evidence": []})
    return out, missing


def raw_page_of(pdf_path: Path):
    """A function: evidence string -> the 1-based page it starts on, from PDFium's raw page texts."""
    document = pdfium.PdfDocument(str(pdf_path))
    joined, starts = "", []
    for page in document:
        starts.append(len(joined))
        joined += normalised(page.get_textpage().get_text_range(), drop_spaces=True)[0]

    def page_of(evidence: str) -> int | None:
        at = joined.find(normalised(evidence, drop_spaces=True)[0])
        return None if at < 0 else sum(1 for s in starts if s <= at)

    return page_of


def evaluate(path: Path, items: list[dict], embedder, work: Path) -> dict:
    corpus, index = work / f"corpus{path.suffix}", work / f"index{path.suffix}"
    corpus.mkdir()
    shutil.copy(path, corpus / path.name)
    began = time.perf_counter()
    build(corpus, index, embedder)
    seconds = time.perf_counter() - began
    searcher = open_searcher(index, embedder=embedder)
    doc = searcher.index.documents[NAME]
    mapped, missing = relocated(items, doc.text)
    answerable = [m for m, item in zip(mapped, items) if item.get("evidence")]
    lost = sum(1 for m in answerable if not m["evidence"])
    responses = respond(searcher, mapped)
    kept = [(m, r) for m, r in zip(mapped, responses) if m["evidence"] or not m.get("section")]
    figures, misses = score(doc.text, [m for m, _ in kept], [r for _, r in kept])
    row = {"format": path.suffix, "build_s": round(seconds, 1), "evidence_not_found": missing,
           "items_without_evidence": lost, "sections": len(doc.sections), "hit@1": figures["hit@1"],
           "hit@5": figures["hit@5"], "section@1": figures["section@1"], "mrr@10": figures["mrr@10"]}
    if path.suffix == ".pdf":
        page_of = raw_page_of(path)
        missed = {m[0] for m in misses if m[1] != 1}
        right = total = 0
        originals = {item["id"]: item for item in items}
        for m, response in kept:
            item = originals[m["id"]]
            if not m["evidence"] or m["id"] in missed:
                continue
            top = response["results"][0]
            pages = [p for p in (page_of(e) for e in item["evidence"]) if p is not None]
            total += 1
            right += any(top["page"] <= p <= (top["page_end"] or top["page"]) for p in pages)
        row.update({"pages": len(doc.pages), "page_right": f"{right}/{total}",
                    "page_accuracy": round(right / total, 3) if total else None})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=Path, default=ROOT / "eval" / "dev.jsonl")
    parser.add_argument("--keep", type=Path, help="also copy the converted files here")
    args = parser.parse_args()
    items = load_jsonl(args.questions)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        markdown = work / f"{NAME}.md"
        markdown.write_text(markdown_of(PAPER.read_text(encoding="utf-8")), encoding="utf-8")
        files = {".txt": PAPER, **convert(markdown, work)}
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for path in files.values():
                shutil.copy(path, args.keep / path.name)
        with build_encoder(work / "encoder") as (embedder, _):
            rows = [evaluate(path, items, embedder, work) for path in files.values()]
    base = rows[0]
    for row in rows:
        row["Δhit@1"] = round(row["hit@1"] - base["hit@1"], 3)
        row["Δsection@1"] = round(row["section@1"] - base["section@1"], 3)
        print(json.dumps(row, ensure_ascii=False))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
