"""Scoring ranked passages against a labelled question set (JSONL items with evidence strings).

The definitions and key names are those of the reference scorer `tests/fixtures/score.py` (a test checks that
both agree): a result *hits* an item when its span covers at least half of one evidence string's span (with
`shorter=True`, half of the shorter of the two spans, for evidence given as whole paragraphs), and a result from
another document than the item's never hits.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:
    from .search import Searcher

Span = tuple[int, int]


def load_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def evidence_spans(text: str, item: dict) -> list[Span]:
    spans = []
    for evidence in item.get("evidence") or []:
        at = text.find(evidence)
        if at < 0:
            raise ValueError(f"{item['id']}: evidence not in document: {evidence[:60]!r}")
        spans.append((at, at + len(evidence)))
    return spans


def overlap(a: Span, b: Span) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def hit_flags(result: dict, spans: list[Span], shorter: bool, document: str | None) -> list[bool]:
    if document is not None and result.get("document", document) != document:
        return [False] * len(spans)
    s, e = result["start"], result["end"]
    return [overlap((s, e), (a, b)) >= 0.5 * (min(e - s, b - a) if shorter else b - a) for a, b in spans]


def highlight_hits(result: dict, spans: list[Span]) -> bool:
    marks = result.get("highlights") or []
    if not marks:
        return False
    mark = (marks[0]["start"], marks[0]["end"])
    return any(overlap(mark, span) >= 0.5 * min(mark[1] - mark[0], span[1] - span[0]) for span in spans)


def score(
    texts: dict[str, str] | str, items: list[dict], responses: list[dict], k: int = 5, shorter: bool = False
) -> tuple[dict, list[tuple[str, int | None, str]]]:
    """Figures for `responses` (one per item, in order) and the misses (id, rank of first hit or None, question).

    `texts` is the document text, or a dict of document id -> text when items name their `document`.
    """
    if len(items) != len(responses):
        raise ValueError(f"{len(responses)} responses for {len(items)} questions: one response per question, in order")
    answerable = [(i, r) for i, r in zip(items, responses) if i.get("evidence")]
    unanswerable = [(i, r) for i, r in zip(items, responses) if not i.get("evidence")]
    flagged = [bool(r.get("answerable", bool(r.get("results")))) for _, r in answerable]
    rejected = [not r.get("answerable", bool(r.get("results"))) for _, r in unanswerable]
    words = [len(res.get("text", "").split()) for r in responses for res in r.get("results", [])[:k]]
    firsts, sections, highlights, coverage, misses = [], [], [], [], []
    by_type: dict[str, list[bool]] = {}
    for item, response in answerable:
        results = response.get("results", [])
        document = item.get("document")
        if isinstance(texts, str):
            text = texts
        elif document is None:
            raise ValueError(f"{item['id']}: names no `document`, but the texts are of several documents")
        else:
            text = texts[document]
        spans = evidence_spans(text, item)
        flags = [hit_flags(res, spans, shorter, document) for res in results[:10]]
        first = next((rank for rank, f in enumerate(flags, 1) if any(f)), None)
        firsts.append(first)
        top_ok = bool(results) and (document is None or results[0].get("document", document) == document)
        highlights.append(top_ok and highlight_hits(results[0], spans))
        gold = set(item.get("sections") or [item["section"]])
        sections.append(top_ok and (results[0].get("section") or "").strip() in gold)
        covered = {j for f in flags[:k] for j, hit in enumerate(f) if hit}
        coverage.append(len(covered) / len(spans))
        by_type.setdefault(item["type"], []).append(first is not None and first <= k)
        if first != 1:
            misses.append((item["id"], first, item["question"]))
    n = len(answerable)
    figures = {
        "answerable_items": n,
        "unanswerable_items": len(unanswerable),
        "hit@1": sum(f == 1 for f in firsts) / n,
        f"hit@{k}": sum(f is not None and f <= k for f in firsts) / n,
        "mrr@10": sum(1 / f for f in firsts if f) / n,
        "section@1": sum(sections) / n,
        f"evidence_coverage@{k}": sum(coverage) / n,
        "highlight@1": sum(highlights) / n,
        "median_passage_words": statistics.median(words) if words else None,
        "answerable_recall": sum(flagged) / n,
        "unanswerable_rejected": sum(rejected) / len(unanswerable) if unanswerable else None,
        f"hit@{k}_by_type": {t: round(sum(v) / len(v), 3) for t, v in sorted(by_type.items())},
    }
    return figures, misses


def hit1_by_type(items: list[dict], misses: Iterable[tuple[str, int | None, str]]) -> dict[str, float]:
    """Share of answerable items of each type whose first result hits."""
    missed = {m[0] for m in misses}
    counts: dict[str, list[bool]] = {}
    for item in items:
        if item.get("evidence"):
            counts.setdefault(item["type"], []).append(item["id"] not in missed)
    return {t: round(sum(v) / len(v), 3) for t, v in sorted(counts.items())}


def respond(searcher, items: list[dict], restricted: bool = True) -> list[dict]:
    """The search response (10 results) to every item, restricted to its `document` when it names one."""
    return [searcher.search(item["question"], 10, item.get("document") if restricted else None) for item in items]


def run_evaluation(
    questions: Path,
    corpus: Path,
    index_dir: Path,
    mode: str = "restricted",
    shorter: bool = False,
    threshold: float | None = None,
    progress=None,
    encoder: str = "exact",
    threads: int = 1,
    backend=None,
    calibration=None,
) -> tuple[dict, list]:
    """Search every question as the API does (10 results) and score the responses.

    mode: `restricted` searches only an item's `document` when it names one; `unrestricted` searches everything;
    `per-document` builds a fresh index for each document alone (in a temporary folder) and searches it.
    `encoder` and `threads` are the query encoder's settings (`query_encoder`, `onnx_threads`); `backend` the
    engine's (`engine.open_searcher`: None for the FAISS files, else PostgreSQL); `calibration` (a
    `confidence.Calibration`) replaces the index folder's or the shipped one.
    """
    from .engine import open_searcher

    items = load_jsonl(questions)
    if mode == "per-document" and backend is not None:
        raise ValueError("--mode per-document builds a throwaway index per document: use the faiss backend")
    if mode == "per-document":
        responses, texts = _per_document(items, corpus, shorter, threshold, progress, encoder, calibration)
    else:
        searcher = open_searcher(
            index_dir, corpus, threshold, encoder=encoder, threads=threads, backend=backend, calibration=calibration
        )
        responses = respond(searcher, items, restricted=mode == "restricted")
        texts = {doc_id: doc.text for doc_id, doc in searcher.index.documents.items()}
    named = any("document" in item for item in items)
    if not named and len(texts) != 1:
        raise ValueError("items name no `document` but the corpus holds several documents")
    figures, misses = score(texts if named else next(iter(texts.values())), items, responses, shorter=shorter)
    figures["hit@1_by_type"] = hit1_by_type(items, misses)
    return figures, misses


def _per_document(
    items: list[dict], corpus: Path, shorter: bool, threshold: float | None, progress, encoder: str, calibration=None
) -> tuple[list[dict], dict[str, str]]:
    import tempfile

    from .build_encoder import build_encoder
    from .onnx_embedding import OnnxEmbedder

    sources = item_documents(items, corpus)  # bad items fail before the encoder is exported
    responses: dict[int, dict] = {}
    texts: dict[str, str] = {}
    # One encoder for every document's index and its questions: the one `qa build` and the service use.
    with tempfile.TemporaryDirectory() as tmp, build_encoder(Path(tmp) / "encoder") as (embedder, _):
        queries = embedder  # the exact encoder builds; the questions use the chosen `encoder`
        if isinstance(embedder, OnnxEmbedder) and encoder != embedder.encoder:
            queries = OnnxEmbedder(embedder.build, encoder=encoder)
        for doc_id, searcher, positions in document_searchers(
            sources, corpus, Path(tmp), embedder, queries, threshold, progress, calibration
        ):
            texts[doc_id] = searcher.index.documents[doc_id].text
            for i in positions:
                responses[i] = searcher.search(items[i]["question"], 10, doc_id)
    return [responses[i] for i in range(len(items))], texts


def item_documents(items: list[dict], corpus: Path) -> dict[str, tuple[Path, list[int]]]:
    """Each document the items name: its file in `corpus` and the positions of its items. ValueError for an item
    without a `document` or naming one not in `corpus`."""
    from .documents import corpus_files

    files = corpus_files(corpus)
    by_document: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if "document" not in item:
            raise ValueError(f"{item['id']}: per-document mode needs items that name their `document`")
        by_document.setdefault(item["document"], []).append(i)
    for doc_id in by_document:
        if doc_id not in files:
            raise ValueError(f"document {doc_id!r} is not in {corpus}")
    return {doc_id: (files[doc_id], positions) for doc_id, positions in by_document.items()}


def document_searchers(
    sources: dict[str, tuple[Path, list[int]]],
    corpus: Path,
    work: Path,
    embedder,
    queries=None,
    threshold: float | None = None,
    progress=None,
    calibration=None,
) -> Iterator[tuple[str, Searcher, list[int]]]:
    """For each of `item_documents`' documents in turn: its id, a searcher over an index of it alone (built into a
    folder under `work` with `embedder`; questions encoded by `queries`, default the same) and its items' positions."""
    import shutil

    from .engine import open_searcher
    from .index import build

    for n, (doc_id, (source, positions)) in enumerate(
        (progress or (lambda x, total, label: x))(sources.items(), len(sources), "documents")
    ):
        folder = work / f"document-{n}"
        target = folder / "corpus" / source.relative_to(corpus)
        target.parent.mkdir(parents=True)
        shutil.copyfile(source, target)
        build(folder / "corpus", folder / "index", embedder)
        searcher = open_searcher(
            folder / "index", threshold=threshold, embedder=queries or embedder, calibration=calibration
        )
        yield doc_id, searcher, positions
