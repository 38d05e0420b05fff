"""Retrieval variants on the dev set (and, with --qasper, QASPER one paper at a time): one table, one command.

    python bench/retrieval.py            # dev set, every variant (a few minutes on two cores)
    python bench/retrieval.py --qasper   # also the 20 QASPER papers (slower: an index per paper and unit size)

Each unit size is built once into a temporary folder with the real model (its ONNX export, as `qa build` uses); the ranking variants are `search.Weights`
values over the same index, so a row differs from the kept configuration in exactly what it names.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from qa.documents import corpus_files
from qa.evaluation import load_jsonl, respond, score
from qa.index import build, load
from qa.build_encoder import build_encoder
from qa.rankers import Weights
from qa.search import Searcher

ROOT = Path(__file__).resolve().parents[1]
KEPT = Weights()
VARIANTS: list[tuple[str, Weights]] = [
    ("dense only (passage + sentence + section)", Weights(dense=1.0)),
    ("BM25 only", Weights(dense=0.0)),
    ("passage cosine only, fused", Weights(passage=1.0, section=0.0)),
    ("no section centroid", Weights(section=0.0)),
    ("reciprocal rank fusion k=60", Weights(fusion="rrf")),
    ("dense weight 0.5", Weights(dense=0.5)),
    ("dense weight 0.7", Weights(dense=0.7)),
    ("kept", KEPT),
]
UNIT_SIZES = (80, 120, 160)
COLUMNS = ("hit@1", "hit@5", "mrr@10", "section@1", "highlight@1", "median_passage_words",
           "answerable_recall", "unanswerable_rejected")


def build_index(corpus: Path, folder: Path, embedder, max_words: int) -> Path:
    build(corpus, folder, embedder, max_words=max_words)
    return folder


def dev_figures(index_dir: Path, embedder, weights: Weights) -> dict:
    searcher = Searcher(load(index_dir), embedder, weights=weights)
    items = load_jsonl(ROOT / "eval" / "dev.jsonl")
    text = next(iter(searcher.index.documents.values())).text
    return score(text, items, respond(searcher, items))[0]


def qasper_figures(indexes: dict[str, Path], embedder, weights: Weights) -> dict:
    """One paper at a time: every question searched in its own paper's index."""
    items = load_jsonl(ROOT / "eval" / "qasper" / "questions.jsonl")
    searchers = {doc: Searcher(load(path), embedder, weights=weights) for doc, path in indexes.items()}
    responses = [searchers[item["document"]].search(item["question"], 10) for item in items]
    texts = {doc: s.index.documents[doc].text for doc, s in searchers.items()}
    return score(texts, items, responses, shorter=True)[0]


def qasper_indexes(tmp: Path, embedder, max_words: int) -> dict[str, Path]:
    papers = ROOT / "eval" / "qasper" / "papers"
    indexes = {}
    for doc_id, path in corpus_files(papers).items():
        corpus = tmp / f"qasper-{max_words}" / doc_id / "corpus"
        corpus.mkdir(parents=True)
        (corpus / path.name).write_bytes(path.read_bytes())
        indexes[doc_id] = build_index(corpus, corpus.parent / "index", embedder, max_words)
    return indexes


def row(label: str, dev: dict, qasper: dict | None) -> str:
    cells = [f"{dev[c]:.3f}" if isinstance(dev[c], float) else str(dev[c]) for c in COLUMNS]
    if qasper is not None:
        cells.append(f"{qasper['hit@1']:.3f} / {qasper['hit@5']:.3f} / {qasper['mrr@10']:.3f}")
    return f"| {label} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qasper", action="store_true", help="also score QASPER, one paper at a time")
    args = parser.parse_args()
    header = ["variant", *COLUMNS] + (["QASPER hit@1 / hit@5 / mrr@10"] if args.qasper else [])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    # The encoder `qa build` and the service use: the model's ONNX export, exported once into the scratch folder.
    with tempfile.TemporaryDirectory() as folder, build_encoder(Path(folder) / "encoder") as (embedder, _):
        tmp = Path(folder)
        for max_words in UNIT_SIZES:
            index_dir = build_index(ROOT / "corpus", tmp / f"dev-{max_words}", embedder, max_words)
            papers = qasper_indexes(tmp, embedder, max_words) if args.qasper else None
            variants = VARIANTS if max_words == 160 else [("kept", KEPT)]
            for label, weights in variants:
                qasper = qasper_figures(papers, embedder, weights) if papers else None
                print(row(f"≤ {max_words} words, {label}", dev_figures(index_dir, embedder, weights), qasper),
                      flush=True)


if __name__ == "__main__":
    main()
