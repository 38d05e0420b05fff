"""What a second server worker costs: open time and memory of two processes that open the same live index.

    python bench/worker_memory.py --index FOLDER [--copies N] [--questions JSONL] [--fork] [--json PATH]

Each worker is a child process that opens the live build as a server worker does (`engine.open_searcher`, one
query thread), answers a few questions across the whole index (so the pages a search touches are resident), then
reports its open time, the in-process search time (p50, p99 over a second round of the questions, searched over
the whole index) and memory from /proc/self/smaps_rollup, and waits. The second worker starts while the first
is alive. RSS counts every resident page, shared or not; PSS divides shared pages among the processes mapping
them; "private" is what the process alone holds, the memory a further worker adds.

With `--copies N`, the live build of `--index` and N - 1 varied copies of it are first written into a temporary
index (each copy a document of its own, its passages varied and its vectors derived from the originals': no
embedding; see `vary`), to see how the figures grow with the corpus.
It measures whichever `qa` is importable: run it with `PYTHONPATH=<checkout>/src` to compare two versions.

With `--fork`, the workers are forked from this process after it imported what `qa serve`'s gunicorn master
imports before forking (`server.import_before_fork`; in a version without it, the app), as the server's workers
are, instead of started as fresh interpreters.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

QUESTIONS = ("When did Russia deliver the S-300 to Iran?", "What dataset is used for evaluation?",
             "How does the model compare with the baseline?", "Which languages are covered?")


def memory_mb(pid: int | str = "self") -> dict[str, float]:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text(encoding="utf-8")

    def kb(key: str) -> int:
        return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE).group(1))  # type: ignore[union-attr]

    return {"rss_mb": kb("Rss") / 1024, "pss_mb": kb("Pss") / 1024,
            "private_mb": (kb("Private_Clean") + kb("Private_Dirty")) / 1024}


def worker(index_dir: Path, questions: list[str]) -> None:
    """The child: open, search every question twice (the second round timed), report one JSON line, wait for the
    parent to close stdin."""
    from qa.engine import open_searcher

    began = time.perf_counter()
    searcher = open_searcher(index_dir)
    opened = time.perf_counter() - began
    for question in questions:
        searcher.search(question, 10)
    took = []
    for question in questions:
        began = time.perf_counter()
        searcher.search(question, 10)
        took.append((time.perf_counter() - began) * 1000)
    print(json.dumps({"open_s": opened, "chunks": len(searcher.index.chunks), "search_p50_ms": np.median(took),
                      "search_p99_ms": np.percentile(took, 99), **memory_mb()}), flush=True)
    sys.stdin.read()


def replicate(source: Path, target: Path, copies: int, limit: int = 0, seed: int = 0) -> float:
    """A build of `source`'s live build and `copies - 1` varied copies of it (`vary`): no embedding. With a
    `limit`, documents stop being added once that many passages are in (one document at least). Returns the
    seconds `index.write_staged` took (every file of the build, the HNSW index included).

    Each document's vectors go straight into arrays sized for every copy (a copy's passage has at most one
    sentence more than its original), not kept per document and concatenated: at 40 copies that held every
    vector twice.
    """
    from qa.index import Plan, build_lock, load, make_live, write_staged

    index = load(source)
    rng = np.random.default_rng(seed)
    n, rows_bound = len(index.chunks), len(index.sentence_vectors) + len(index.chunks)
    passages = np.empty((copies * n, index.vectors.shape[1]), dtype=np.float32)
    sentences = np.empty((copies * rows_bound, index.sentence_vectors.shape[1]), dtype=index.sentence_vectors.dtype)
    highlights = np.empty((copies * rows_bound, index.highlight_vectors.shape[1]), dtype=np.float32)
    documents, chunks = [], []
    rows = 0
    for k in range(copies):
        for doc in index.documents.values():
            if limit and chunks and len(chunks) >= limit:
                break
            first, last = index.document_ranges[doc.id]
            if k == 0:
                documents.append(doc)
                new_chunks = index.chunks[first:last]
                span = slice(index.sentence_offsets[first], index.sentence_offsets[last])
                vectors = (index.vectors[first:last], index.sentence_vectors[span], index.highlight_vectors[span])
            else:
                copy, new_chunks, vectors = vary(index, doc, f"{doc.id}-{k}", f"copy-{k}/{doc.path}", rng)
                documents.append(copy)
            passages[len(chunks) : len(chunks) + len(new_chunks)] = vectors[0]
            sentences[rows : rows + len(vectors[1])] = vectors[1]
            highlights[rows : rows + len(vectors[2])] = vectors[2]
            chunks.extend(new_chunks)
            rows += len(vectors[1])

    def export(staging: Path) -> dict:
        if (index.path / "onnx").is_dir():
            shutil.copytree(index.path / "onnx", staging / "onnx")
        return {key: index.manifest[key] for key in ("onnx",) if key in index.manifest}

    build_id = f"replicated-{copies}"
    with build_lock(target):
        staging = target / "builds" / f".staging-{build_id}"
        staging.mkdir(parents=True)
        began = time.perf_counter()
        write_staged(staging, Plan(documents, chunks), (passages[: len(chunks)], sentences[:rows], highlights[:rows]),
                     index.manifest["model"], index.manifest["chunking"], export, [])
        took = time.perf_counter() - began
        make_live(target, staging, build_id)
    return took


def vary(index, doc, doc_id: str, path: str, rng: np.random.Generator):
    """A copy of `doc` whose every passage differs from its original: one of its sentences dropped (when it has
    two or more), one sentence of a passage of another document put in at a random place, and, one time in two, two
    adjacent sentences swapped. Vectors are reused, not embedded: each sentence keeps its own sentence vector (a
    sentence is embedded alone, so this one is exact) and its highlight vector (read in its original passage); the
    passage vector is the normalised sum of its sentences' highlight vectors weighted by their words (what mean
    pooling over the passage's tokens approximates). Returns the document, its chunks and its three vector arrays.
    """
    from qa.formats.layout import Paragraph, Section

    first, last = index.document_ranges[doc.id]
    offsets = index.sentence_offsets
    total = len(index.chunks)
    text, chunks, rows, weights, sections = "", [], [], [], {}
    for original in index.chunks[first:last]:
        own = list(range(offsets[original.chunk + first], offsets[original.chunk + first + 1]))
        texts = {row: sentence for row, sentence in zip(own, original.sentence_texts())}
        if len(own) > 1:
            own.pop(int(rng.integers(len(own))))
        donor = int(rng.integers(total))
        while first <= donor < last:
            donor = int(rng.integers(total))
        donor_rows = range(offsets[donor], offsets[donor + 1])
        borrowed = int(rng.integers(len(donor_rows)))
        texts[donor_rows[borrowed]] = index.chunks[donor].sentence_texts()[borrowed]
        own.insert(int(rng.integers(len(own) + 1)), donor_rows[borrowed])
        if len(own) > 1 and rng.random() < 0.5:
            i = int(rng.integers(len(own) - 1))
            own[i], own[i + 1] = own[i + 1], own[i]
        if text:
            text += "\n\n"
        start, spans = len(text), []
        for i, row in enumerate(own):
            text += (" " if i else "") + texts[row]
            spans.append((len(text) - len(texts[row]), len(text)))
            weights.append(max(1, len(texts[row].split())))
        rows.append(own)
        chunks.append(dataclasses.replace(original, document=doc_id, start=start, end=len(text),
                                          text=text[start:], sentences=tuple(spans)))
        span = sections.setdefault(original.section_index, [original.section, start, len(text)])
        span[2] = len(text)
    flat = np.concatenate(rows)
    highlights = np.asarray(index.highlight_vectors[flat], dtype=np.float32)
    starts = np.cumsum([0] + [len(r) for r in rows[:-1]])
    pooled = np.add.reduceat(highlights * np.asarray(weights, dtype=np.float32)[:, None], starts)
    passages = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    numbers = {key: i for i, key in enumerate(sections)}
    within: dict[int, int] = {}
    paragraphs = []
    for c in chunks:
        within[c.section_index] = within.get(c.section_index, 0) + 1
        paragraphs.append(Paragraph(c.start, c.end, numbers[c.section_index], within[c.section_index]))
    chunks = [dataclasses.replace(c, section_index=numbers[c.section_index], paragraph=p.number)
              for c, p in zip(chunks, paragraphs)]
    copy = dataclasses.replace(doc, id=doc_id, path=path, sha256=hashlib.sha256(text.encode()).hexdigest(), text=text,
                               sections=tuple(Section(t, s, e) for t, s, e in sections.values()),
                               paragraphs=tuple(paragraphs), pages=())
    return copy, chunks, (passages.astype(np.float32), index.sentence_vectors[flat], highlights)


def measure(index_dir: Path, questions: Path | None) -> list[dict]:
    children = []
    reports = []
    try:
        for _ in range(2):
            command = [sys.executable, __file__, "--index", str(index_dir), "--worker"]
            command += ["--questions", str(questions)] if questions else []
            child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            children.append(child)
            line = child.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise SystemExit(f"worker failed to open {index_dir}")
            reports.append(json.loads(line))
    finally:
        for child in children:
            child.stdin.close()  # type: ignore[union-attr]
            child.wait(timeout=60)
    return reports


def forked(index_dir: Path, questions: list[str]) -> list[dict]:
    """`measure`, the workers forked from this process once it imported what the server's master imports."""
    from qa import server

    prepare = getattr(server, "import_before_fork", None)
    if prepare is not None:
        prepare()
    else:
        import qa.app  # noqa: F401 - what the master of a version without it imports (`server.run`)
    reports, children = [], []
    try:
        for _ in range(2):
            report_read, report_write = os.pipe()
            stop_read, stop_write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker: reports on one pipe, waits for the other to close
                for fd in (report_read, stop_write, *(other for _, other in children)):
                    os.close(fd)  # an earlier worker's stop pipe held open here would never close for it
                sys.stdout, sys.stdin = os.fdopen(report_write, "w"), os.fdopen(stop_read)
                try:
                    worker(index_dir, questions)
                finally:
                    os._exit(0)
            os.close(report_write)
            os.close(stop_read)
            children.append((pid, stop_write))
            with os.fdopen(report_read) as report:
                line = report.readline()
            if not line:
                raise SystemExit(f"worker failed to open {index_dir}")
            reports.append(json.loads(line))
    finally:
        for pid, stop in children:
            os.close(stop)
            os.waitpid(pid, 0)
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--questions", type=Path, help="JSONL with a `question` per line (default: 4 built in)")
    parser.add_argument("--fork", action="store_true", help="fork the workers, as the server does (see above)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    lines = args.questions.read_text(encoding="utf-8").splitlines() if args.questions else []
    questions = [json.loads(line)["question"] for line in lines if line.strip()] or list(QUESTIONS)
    if args.worker:
        worker(args.index, questions)
        return
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = args.index
        if args.copies:
            index_dir = Path(tmp) / "index"
            replicate(args.index, index_dir, args.copies)
        reports = forked(index_dir, questions) if args.fork else measure(index_dir, args.questions)
    for n, report in enumerate(reports, 1):
        print(f"worker {n}: {report['chunks']} passages, open {report['open_s']:.2f} s, RSS {report['rss_mb']:.0f} MB, "
              f"PSS {report['pss_mb']:.0f} MB, private {report['private_mb']:.0f} MB, "
              f"search p50 {report['search_p50_ms']:.1f} ms, p99 {report['search_p99_ms']:.1f} ms")
    second, first = reports[1], reports[0]
    print(f"second worker's private memory / first's RSS: {second['private_mb'] / first['rss_mb']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
