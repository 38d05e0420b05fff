"""Can a learned map stand in for the sentence pass? Ridge maps from each sentence's in-context vector (its highlight
vector, pooled from the passage pass) to its vector embedded alone, fitted on training papers, scored held out.

    python bench/sentence_map.py --index IDX --train TRAIN [--qasper QUESTIONS] [--dev-index DEV_IDX --dev QUESTIONS]

`IDX` is a build holding the training papers (`TRAIN/papers`, questions in `TRAIN/questions.jsonl`) and, for the
held-out figures, QASPER's papers too; `DEV_IDX` a build of the bundled corpus. Nothing is fitted on `--qasper` or
`--dev`. Inputs to a map (features): `h` the in-context vector, `hp` with the passage vector beside it, `hpe` also
with the mean of the sentence's static word-piece embeddings (the model's input table: what the words are, read in
no context). Every map is residual, s ≈ h + [features, 1] W, ridge-penalised towards the identity, and its output
normalised. For each feature set and penalty it reports (1) the cosine to the true vector of sentences of papers
left out of the fit (k folds over the training papers), then for each feature set at its best penalty (2) the
evaluation figures of the training questions with every training paper's sentence vectors replaced by its held-out
fold's map (restricted to the question's paper, as `--mode per-document` scores: same figures), and (3) with a map
fitted on every training paper, the held-out figures on `--qasper` (paragraph evidence) and `--dev`. A scored build
is a hard-linked copy of the build with `sentences.npy` replaced, in a temporary folder; the builds are not changed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from qa.embedding import model_path
from qa.engine import open_searcher
from qa.evaluation import load_jsonl, respond, score
from qa.index import POINTER, Index, live_build, load
from qa.onnx_embedding import EXPORT_FOLDER, TOKENIZER_FILE

PENALTIES = (0.01, 0.1, 1.0, 10.0)
FEATURES = ("h", "hp", "hpe")
FIGURES = ("hit@1", "hit@5", "mrr@10", "section@1", "highlight@1", "answerable_recall", "unanswerable_rejected")


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def static_means(index: Index) -> np.ndarray:
    """Each sentence's mean word-piece input embedding (no special tokens, no position): its words out of context."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    table = load_file(str(Path(model_path()) / "model.safetensors"))["embeddings.word_embeddings.weight"]
    tokenizer = Tokenizer.from_file(str(index.path / EXPORT_FOLDER / TOKENIZER_FILE))
    texts = [text for chunk in index.chunks for text in chunk.sentence_texts()]
    means = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
    for row, encoding in enumerate(tokenizer.encode_batch(texts, add_special_tokens=False)):
        if encoding.ids:
            means[row] = table[encoding.ids[:254]].mean(axis=0)  # what the encoder reads: 256 tokens, 2 special
    return means


def features(index: Index, kinds: tuple[str, ...]) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """The sentence vectors, each feature set's inputs (rows in sentence order) and each sentence's document."""
    counts = np.diff(np.asarray(index.sentence_offsets))
    highlights = np.asarray(index.highlight_vectors, dtype=np.float32)
    passages = np.repeat(np.asarray(index.vectors, dtype=np.float32), counts, axis=0)
    inputs = {"h": highlights, "hp": np.hstack([highlights, passages])}
    if "hpe" in kinds:
        inputs["hpe"] = np.hstack([inputs["hp"], static_means(index)])
    documents = np.repeat(np.array([chunk.document for chunk in index.chunks]), counts)
    return np.asarray(index.sentence_vectors, dtype=np.float32), {k: inputs[k] for k in kinds}, documents


def fit(x: np.ndarray, h: np.ndarray, s: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """W, b minimising |h + x W + b - s|^2 + penalty |W|^2 (closed form; the bias unpenalised, by centring)."""
    x_mean, r_mean = x.mean(axis=0), (s - h).mean(axis=0)
    xc = x - x_mean
    gram = xc.T @ xc
    gram[np.diag_indices_from(gram)] += penalty
    w = np.linalg.solve(gram, xc.T @ (s - h - r_mean))
    return w, r_mean - x_mean @ w


def apply(x: np.ndarray, h: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return unit(h + x @ w + b)


def held_out(x: np.ndarray, h: np.ndarray, s: np.ndarray, fold: np.ndarray, penalty: float) -> np.ndarray:
    """Each training sentence's mapped vector from the map fitted without its fold (`fold` -1: not training)."""
    out = s.copy()
    for k in range(fold.max() + 1):
        fitted, left_out = (fold >= 0) & (fold != k), fold == k
        out[left_out] = apply(x[left_out], h[left_out], *fit(x[fitted], h[fitted], s[fitted], penalty))
    return out


def evaluate(build: Path, sentences: np.ndarray, questions: Path, shorter: bool, work: Path) -> dict:
    """The evaluation figures of `questions` on a copy of `build` whose sentence vectors are `sentences`."""
    index_dir = Path(tempfile.mkdtemp(dir=work))
    copy = index_dir / "builds" / build.name
    shutil.copytree(build, copy, copy_function=os.link)
    (copy / "sentences.npy").unlink()  # a hard link to the original build's file: never write through it
    np.save(copy / "sentences.npy", sentences.astype(np.float16))
    (index_dir / POINTER).write_text(build.name + "\n", encoding="utf-8")
    items = load_jsonl(questions)
    searcher = open_searcher(index_dir)
    texts = {doc_id: doc.text for doc_id, doc in searcher.index.documents.items()}
    named = "document" in items[0]
    figures, _ = score(texts if named else next(iter(texts.values())), items, respond(searcher, items), shorter=shorter)
    shutil.rmtree(index_dir)
    return {k: round(figures[k], 3) for k in FIGURES}


def line(label: str, figures: dict) -> str:
    return f"{label:<28} " + " ".join(f"{k} {v:.3f}" for k, v in figures.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True, help="a build holding the training papers")
    parser.add_argument("--train", type=Path, required=True, help="folder with papers/ and questions.jsonl")
    parser.add_argument("--qasper", type=Path, help="held-out questions on papers of --index (paragraph evidence)")
    parser.add_argument("--dev-index", type=Path, help="a build of the bundled corpus")
    parser.add_argument("--dev", type=Path, help="held-out questions on --dev-index")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--features", default=",".join(FEATURES))
    args = parser.parse_args()
    kinds = tuple(args.features.split(","))
    index = load(args.index)
    build = live_build(args.index)
    assert build is not None
    s, inputs, documents = features(index, kinds)
    h = inputs["h"]
    papers = sorted({p.stem for p in (args.train / "papers").iterdir()} & set(documents))
    rng = np.random.default_rng(0)
    fold_of = dict(zip(papers, rng.permutation(len(papers)) % args.folds))
    fold = np.array([fold_of.get(d, -1) for d in documents])
    training = fold >= 0
    print(f"{len(papers)} training papers, {training.sum()} of {len(s)} sentences")
    print(f"identity (in-context vectors as they are): cos {(unit(h[training]) * s[training]).sum(1).mean():.4f}")
    best: dict[str, float] = {}
    for kind in kinds:
        cosines = {}
        for penalty in PENALTIES:
            mapped = held_out(inputs[kind], h, s, fold, penalty)
            cosines[penalty] = float((mapped[training] * s[training]).sum(1).mean())
            print(f"{kind:<4} penalty {penalty:<5} held-out cos {cosines[penalty]:.4f}", flush=True)
        best[kind] = max(cosines, key=cosines.__getitem__)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_questions = args.train / "questions.jsonl"
        print(line("train, sentences alone", evaluate(build, s, train_questions, True, work)))
        in_context = np.where(training[:, None], h, s)
        print(line("train, in context", evaluate(build, in_context, train_questions, True, work)))
        for kind in kinds:
            mapped = held_out(inputs[kind], h, s, fold, best[kind])
            print(line(f"train, map {kind} ({best[kind]})", evaluate(build, mapped, train_questions, True, work)))
        if args.qasper:
            print(line("qasper, sentences alone", evaluate(build, s, args.qasper, True, work)))
        dev = None
        if args.dev_index and args.dev:
            dev_build = live_build(args.dev_index)
            assert dev_build is not None
            dev = dev_build, *features(load(args.dev_index), kinds)
            print(line("dev, sentences alone", evaluate(dev_build, dev[1], args.dev, False, work)))
        for kind in kinds:
            w, b = fit(inputs[kind][training], h[training], s[training], best[kind])
            if args.qasper:
                mapped = apply(inputs[kind], h, w, b)
                print(line(f"qasper, map {kind}", evaluate(build, mapped, args.qasper, True, work)))
            if dev is not None:
                dev_build, _, dev_inputs, _ = dev
                mapped = apply(dev_inputs[kind], dev_inputs["h"], w, b)
                print(line(f"dev, map {kind}", evaluate(dev_build, mapped, args.dev, False, work)))


if __name__ == "__main__":
    main()
