"""Ranking signals per question, computed once and cached, so that fusions can be compared in seconds.

    python bench/ranking_signals.py collect dev            # the bundled document, eval/dev.jsonl
    python bench/ranking_signals.py collect qasper         # eval/qasper (20 papers)
    python bench/ranking_signals.py collect qasper-train --papers 60   # a seeded sample of QASPER train papers

Each set's documents are built into one index (a search restricted to one document ranks exactly as an index of
that document alone, which `qa eval --mode per-document` uses), with the real ONNX encoder. For every question the
candidates are those `Searcher.rank` takes (dense top 100 and BM25 top 100 in the question's document); the cache
(`artifacts/signals-<set>.pkl`) holds, per candidate, the passage, best-sentence, section-centroid and BM25 scores,
MaxSim over the encoder's token states (several storage variants), and whether it hits the evidence, the section
and (by its highlight) the evidence sentence. `bench/fusion.py` evaluates weight settings over these caches.
"""

from __future__ import annotations

import argparse
import pickle
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from qa.evaluation import evidence_spans, highlight_hits, hit_flags, load_jsonl
from qa.index import build, embedded_text, live_build, load
from qa.late_interaction import (
    TokenStates,
    compress,
    maxsim_scores,
    normalize_rows,
    passage_token_states,
    project,
    projection,
    query_token_states,
)
from qa.lexical import tokenize
from qa.onnx_embedding import OnnxEmbedder, build_encoder, mean_pool_normalize
from qa.search import Searcher

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
SHARED = Path("/work/shared/eval")
SETS = {
    "dev": (ROOT / "eval" / "dev.jsonl", ROOT / "corpus", False),
    "qasper": (ROOT / "eval" / "qasper" / "questions.jsonl", ROOT / "eval" / "qasper" / "papers", True),
    "qasper-train": (SHARED / "qasper-train" / "questions.jsonl", SHARED / "qasper-train" / "papers", True),
}


def token_state_variants(searcher: Searcher, embedder: OnnxEmbedder, with_pruned: bool
                         ) -> tuple[dict[str, TokenStates], dict]:
    """Every passage's token states, stored the ways compared: float32 (reference), int8, int8 pruned of stop words
    and punctuation, and int8 in a reduced basis (`pca<d>`, the basis returned for projecting the questions)."""
    texts = [embedded_text(c) for c in searcher.index.chunks]
    began = time.perf_counter()
    full = passage_token_states(embedder, texts, prune=False)
    variants = {"float": full, "int8": compress(full)}
    if with_pruned:  # a second pass; pruning lost on dev and QASPER, so the larger sets skip it
        variants["int8-pruned"] = compress(passage_token_states(embedder, texts, prune=True))
    print(f"token states of {len(texts)} passages in {time.perf_counter() - began:.1f} s "
          f"({full.tokens.shape[0] / len(texts):.0f} tokens a passage)", flush=True)
    bases = {}
    for d in (64, 96, 128):
        bases[f"pca{d}"] = projection(full, d)
        variants[f"pca{d}"] = compress(project(full, bases[f"pca{d}"]))
    for name, v in variants.items():
        print(f"  {name}: {v.nbytes / len(texts) / 1024:.1f} KB a passage", flush=True)
    return variants, bases


def question_record(searcher: Searcher, embedder: OnnxEmbedder, states: dict[str, TokenStates], bases: dict,
                    item: dict, text: str, shorter: bool) -> dict:
    query = searcher.speller.correct(item["question"]).corrected
    hidden, mask, encodings = embedder._run([query])
    query_vector = mean_pool_normalize(hidden, mask)[0]
    query_tokens = query_token_states(hidden[0], encodings[0])
    document = item.get("document")
    scope = searcher.index.document_ranges[document] if document else (0, len(searcher.index.chunks))
    lexical = searcher.lexical_by_document[document] if document else searcher.lexical
    terms = tokenize([query])[0]
    lexical_all = lexical.scores(terms)
    n = min(100, len(lexical_all))
    lexical_top = scope[0] + np.argpartition(-lexical_all, n - 1)[:n]
    candidates = np.union1d(searcher._dense_candidates(query_vector, scope), lexical_top)
    record = {
        "id": item["id"], "answerable": bool(item.get("evidence")), "type": item.get("type"),
        "candidates": candidates,
        "passage": searcher.index.vectors[candidates] @ query_vector,
        "sentence": searcher._max_sentence_similarity(candidates, query_vector),
        "section": (searcher.centroids @ query_vector)[searcher.section_of[candidates]],
        "bm25": lexical_all[candidates - scope[0]],
        "terms": len(terms), "unknown_terms": sum(t not in lexical.vocabulary for t in terms),
        "maxsim": {name: maxsim_scores(normalize_rows(query_tokens @ bases[name]) if name in bases else query_tokens,
                                       s, candidates) for name, s in states.items()},
    }
    spans = evidence_spans(text, item) if record["answerable"] else []
    chunks = searcher.index.chunks
    gold = set(item.get("sections") or [item.get("section")])
    record["hit"] = np.array([any(hit_flags({"start": chunks[c].start, "end": chunks[c].end}, spans, shorter, None))
                              for c in candidates])
    record["section_hit"] = np.array([chunks[c].section.strip() in gold for c in candidates])
    record["highlight_hit"] = np.array([highlight_hits({"highlights": searcher.highlight(int(c), query_vector)},
                                                       spans) for c in candidates])
    return record


def collect(name: str, papers: int | None, seed: int) -> Path:
    questions, corpus, shorter = SETS[name]
    items = load_jsonl(questions)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if name == "dev" and live_build(ROOT / "index") is not None:
            index_dir = ROOT / "index"
        else:
            documents = sorted({item["document"] for item in items})
            if papers:
                documents = sorted(random.Random(seed).sample(documents, papers))
                items = [item for item in items if item["document"] in set(documents)]
            source = folder / "corpus"
            source.mkdir()
            for doc_id in documents:
                shutil.copyfile(corpus / f"{doc_id}.md", source / f"{doc_id}.md")
            index_dir = folder / "index"
            began = time.perf_counter()
            with build_encoder(folder / "encoder") as (builder, extras):
                build(source, index_dir, builder, extras=extras)
            print(f"built {len(documents)} documents in {time.perf_counter() - began:.0f} s", flush=True)
        index = load(index_dir)
        embedder = OnnxEmbedder(index.path, threads=2, encoder="exact")
        searcher = Searcher(index, embedder)
        states, bases = token_state_variants(searcher, embedder, with_pruned=name != "qasper-train")
        texts = {doc_id: doc.text for doc_id, doc in index.documents.items()}
        began = time.perf_counter()
        records = [question_record(searcher, embedder, states, bases, item, texts[item.get("document") or
                                                                            next(iter(texts))], shorter)
                   for item in items]
        print(f"{len(records)} questions in {time.perf_counter() - began:.1f} s", flush=True)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"signals-{name}.pkl"
    with open(path, "wb") as f:
        pickle.dump({"set": name, "papers": papers, "seed": seed, "records": records}, f)
    print(f"wrote {path}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect")
    c.add_argument("set", choices=sorted(SETS))
    c.add_argument("--papers", type=int, default=None, help="a seeded sample of this many papers")
    c.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    collect(args.set, args.papers, args.seed)


if __name__ == "__main__":
    main()
