"""The build against its floor: tokens per second of `qa build` beside one bare encoder pass over the same passages.

    python bench/build_speed.py [--corpus FOLDER] [--limit N] [--index NEW_FOLDER] [--json PATH]

In one process and one run it (1) reads and chunks the corpus as the build does, (2) runs the floor: the build's
own ONNX export and threads (every core) over every passage's embedded text once, in batches grouped by token
count, with nothing else (no pooling, no sentences, no files), and (3) builds the corpus from scratch into a
temporary index with `index.build` and the encoder `qa build` uses. Both rates count the same tokens (the passages'
real tokens, no padding), so their ratio is the build's efficiency; the build's embedding stages (passages,
sentences) are timed apart through its progress callback. CPU time is the process's user + system time (the
encoder's threads included). Wall time on a shared machine varies from run to run; the ratio within one run is
the figure to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from qa.build_encoder import build_encoder  # noqa: E402
from qa.chunking import chunk_document  # noqa: E402
from qa.documents import scan_corpus  # noqa: E402
from qa.index import build, embedded_text  # noqa: E402
from qa.onnx_embedding import OnnxEmbedder  # noqa: E402

BATCH_TOKENS = 1024  # padded tokens per call: the fastest measured (see index.BATCH_TOKENS)


@dataclass
class Timing:
    wall: float = 0.0
    cpu: float = 0.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def timed() -> Iterator[Timing]:
    timing = Timing()
    wall, cpu = time.perf_counter(), cpu_seconds()
    yield timing
    timing.wall, timing.cpu = time.perf_counter() - wall, cpu_seconds() - cpu


def passage_texts(corpus: Path) -> list[str]:
    return [embedded_text(c) for doc in scan_corpus(corpus).documents for c in chunk_document(doc)]


def token_counts(embedder: OnnxEmbedder, texts: list[str]) -> list[int]:
    """Real tokens of each text under the encoder's truncation (special tokens included, padding not)."""
    return [sum(e.attention_mask) for e in embedder.tokenizer.encode_batch(texts)]


def floor_pass(embedder: OnnxEmbedder, texts: list[str], counts: list[int]) -> Timing:
    """One bare encoder pass over `texts`: tokenize and run the graph, in batches of up to `BATCH_TOKENS` padded
    tokens grouped by token count."""
    batches: list[list[int]] = []
    for position in sorted(range(len(texts)), key=counts.__getitem__):
        if batches and (len(batches[-1]) + 1) * counts[position] <= BATCH_TOKENS:
            batches[-1].append(position)
        else:
            batches.append([position])
    with timed() as timing:
        for batch in batches:
            embedder._run([texts[j] for j in batch])
    return timing


class StageClock:
    """A build progress callback that times each embedding stage from its first batch to its last."""

    def __init__(self) -> None:
        self.stages: dict[str, Timing] = {}

    def __call__(self, items: Iterable, total: int, label: str) -> Iterable:
        with timed() as timing:
            yield from items
        self.stages[label] = timing


def measure(corpus: Path, index_dir: Path | None = None) -> dict:
    texts = passage_texts(corpus)
    with tempfile.TemporaryDirectory() as tmp, build_encoder(Path(tmp) / "encoder") as (embedder, extras):
        if not isinstance(embedder, OnnxEmbedder):
            raise SystemExit("the model could not be exported to ONNX: no floor to measure")
        counts = token_counts(embedder, texts)
        tokens = sum(counts)
        embedder.encode(texts[:32])  # warm both the same way
        floor = floor_pass(embedder, texts, counts)
        clock = StageClock()
        with timed() as whole:
            report = build(corpus, index_dir or Path(tmp) / "index", embedder, progress=clock, extras=extras)
        threads = embedder.session.get_session_options().intra_op_num_threads
    figures = {
        "corpus": str(corpus), "documents": len(report.added), "passages": len(texts), "tokens": tokens,
        "cores": len(os.sched_getaffinity(0)), "onnx_threads": threads,
        "floor_wall_s": floor.wall, "floor_cpu_s": floor.cpu,
        "floor_tokens_per_s": tokens / floor.wall, "floor_tokens_per_cpu_s": tokens / floor.cpu,
        "build_wall_s": whole.wall, "build_cpu_s": whole.cpu,
        "build_tokens_per_s": tokens / whole.wall, "build_tokens_per_cpu_s": tokens / whole.cpu,
        "build_vs_floor": floor.wall / whole.wall,
        "build_vs_floor_cpu": floor.cpu / whole.cpu,
    }
    for label, timing in clock.stages.items():
        figures[f"stage_{label}_wall_s"] = timing.wall
        figures[f"stage_{label}_cpu_s"] = timing.cpu
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    parser.add_argument("--limit", type=int, default=0, help="only the first N files of the corpus (by name)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--index", type=Path, help="build into this new folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if args.limit:
            corpus = Path(tmp) / "corpus"
            corpus.mkdir()
            for path in sorted(p for p in args.corpus.iterdir() if p.is_file())[:args.limit]:
                shutil.copyfile(path, corpus / path.name)
        if args.index and args.index.exists():
            raise SystemExit(f"{args.index} exists: give a new folder")
        figures = measure(corpus, args.index)
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value:,.3f}" if isinstance(value, float) else f"{name:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
