"""Fine-tuning the encoder on QASPER train: does it lift retrieval on research papers and on the bundled paper?

The figures in docs/retrieval.md ("Fine-tuning the encoder on QASPER train") came from (PYTHONPATH=src; each line
a process of its own, run side by side with `--threads 1`, 10-30 minutes each on two shared cores):

    python bench/finetune.py cv --settings base,last2 --fold 0     # and --fold 1; likewise full, last1
    python bench/finetune.py heldout base                          # today's encoder on dev and QASPER shared
    python bench/finetune.py heldout last2                         # fitted on all of QASPER train, same sets
    python bench/finetune.py compare base last2                    # questions gained and lost

Training examples: each answerable QASPER-train question with each passage (the service's chunking, embedded as
the service embeds it, `index.embedded_text`) that hits its evidence as `qa eval --paragraph-evidence` scores it,
and as hard negative the passage of the same paper that BM25 ranks highest among those that miss. Loss: multiple
negatives ranking (in-batch negatives plus the hard one, scale 20), no question twice in a batch. `SETTINGS` names
what is trained (the whole model, or only its last layers), the learning rate and the epochs.

Evaluation is the service's full hybrid ranking (`Searcher`, one index per paper, as `qa eval --mode per-document`
builds them), with the encoder run by sentence-transformers (torch) for the index and the questions alike; `base`
is the packaged model through the same path, which reproduces the shipped figures except highlight@1 (each
sentence is embedded alone here, without the ONNX encoder's in-context reading). `cv` fits on the papers of all
folds but one and scores the questions of a seeded sample of the held-out fold's papers (embedding every passage
and sentence of 200 papers per setting is over an hour on two shared cores). `heldout` fits on all 200 papers and
scores eval/dev.jsonl (the bundled paper) and eval/qasper (20 papers), with today's calibration and with one
refitted on dev as `qa tune --calibration-only` does; results go to artifacts/finetune-<setting>.json for
`compare`.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qa.chunking import Chunk, chunk_document
from qa.confidence import Calibration
from qa.documents import Document, read_corpus
from qa.embedding import SentenceTransformerEmbedder
from qa.engine import open_searcher
from qa.evaluation import document_searchers, evidence_spans, hit_flags, item_documents, load_jsonl, respond, score
from qa.index import build, embedded_text
from qa.lexical import Postings, tokenize
from qa.tuning import tune

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
TRAIN = Path("/work/shared/eval/qasper-train")
DEV = (ROOT / "eval" / "dev.jsonl", ROOT / "corpus")
QASPER = (ROOT / "eval" / "qasper" / "questions.jsonl", ROOT / "eval" / "qasper" / "papers")
FIGURES = ("hit@1", "hit@5", "mrr@10", "section@1", "highlight@1", "answerable_recall", "unanswerable_rejected")
LAYERS = 6  # all-MiniLM-L6-v2's transformer layers
BATCH = 16
SCALE = 20.0  # sentence-transformers' default for MultipleNegativesRankingLoss
TRAIN_MAX_TOKENS = 128  # passages are truncated this far while training only (the service reads 256): half the CPU
POSITIVES_PER_QUESTION = 2  # a question with long evidence must not outweigh the others


@dataclass(frozen=True)
class Setting:
    layers: int | None  # the last `layers` transformer layers are trained; None: the whole model
    learning_rate: float
    epochs: int


SETTINGS = {
    "full": Setting(None, 2e-5, 1),
    "last2": Setting(2, 1e-4, 1),
    "last1": Setting(1, 1e-4, 1),
}


class FittedEmbedder(SentenceTransformerEmbedder):
    """The `Embedder` of a sentence-transformers model in memory (the packaged model, or one fitted here)."""

    def __init__(self, model, version: str) -> None:
        self.model = model
        self.model_version = version


def load_model():
    from sentence_transformers import SentenceTransformer

    from qa.embedding import model_path

    return SentenceTransformer(model_path(), device="cpu", local_files_only=True)


def evidence_passages(item: dict, doc: Document, chunks: list[Chunk]) -> list[Chunk]:
    """The passages `qa eval --paragraph-evidence` counts as hits for `item`."""
    spans = evidence_spans(doc.text, item)
    return [c for c in chunks if any(hit_flags({"start": c.start, "end": c.end}, spans, True, None))]


def bm25_postings(texts: list[str], folder: Path) -> Postings:
    """BM25 over `texts` alone, as a build writes it, into `folder`."""
    folder.mkdir()
    Postings.write(folder, texts)
    return Postings(folder)


def examples(items: list[dict], docs: dict[str, Document]) -> list[tuple[str, str, str]]:
    """(question, evidence passage, hardest BM25 passage of the same paper that misses), as embedded."""
    chunks = {doc_id: chunk_document(doc) for doc_id, doc in docs.items()}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        lexical = {
            doc_id: bm25_postings([embedded_text(c) for c in found], Path(scratch) / str(n))
            for n, (doc_id, found) in enumerate(chunks.items())
        }
        for item in items:
            if not item.get("evidence"):
                continue
            doc_chunks = chunks[item["document"]]
            positives = evidence_passages(item, docs[item["document"]], doc_chunks)
            hits = {c.chunk for c in positives}
            bm25 = lexical[item["document"]].scores(tokenize([item["question"]])[0], 0, len(doc_chunks))
            misses = [i for i in np.argsort(-bm25, kind="stable") if doc_chunks[i].chunk not in hits]
            if not positives or not misses:
                continue
            negative = embedded_text(doc_chunks[misses[0]])
            rows += [(item["question"], embedded_text(c), negative) for c in positives[:POSITIVES_PER_QUESTION]]
    return rows


def batches(rows: list[tuple[str, str, str]], rng: random.Random) -> list[list[tuple[str, str, str]]]:
    """Shuffled batches of `BATCH` with no question twice in a batch (its other passage would count as negative)."""
    pending = rows[:]
    rng.shuffle(pending)
    out: list[list[tuple[str, str, str]]] = []
    while pending:
        batch, rest, seen = [], [], set()
        for row in pending:
            if len(batch) < BATCH and row[0] not in seen:
                batch.append(row)
                seen.add(row[0])
            else:
                rest.append(row)
        out.append(batch)
        pending = rest
    return out


def fit(rows: list[tuple[str, str, str]], setting: Setting, seed: int = 0):
    """The packaged model fitted on `rows` as `setting` says (multiple negatives ranking loss)."""
    import torch

    torch.manual_seed(seed)
    model = load_model()
    transformer = model[0].auto_model
    trained = [p for p in model.parameters()]
    if setting.layers is not None:
        for p in model.parameters():
            p.requires_grad = False
        trained = [p for layer in transformer.encoder.layer[LAYERS - setting.layers :] for p in layer.parameters()]
        for p in trained:
            p.requires_grad = True
    rng = random.Random(seed)
    schedule = [batches(rows, rng) for _ in range(setting.epochs)]
    steps = sum(len(s) for s in schedule)
    optimizer = torch.optim.AdamW(trained, lr=setting.learning_rate)
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / max(1, steps - warmup)))
    )
    model.max_seq_length = TRAIN_MAX_TOKENS
    model.train()

    def embed(texts: list[str]) -> torch.Tensor:
        features = model.preprocess(texts)
        return model(features)["sentence_embedding"]  # the model's own Normalize: unit vectors

    for epoch in schedule:
        for batch in epoch:
            questions, positives, negatives = (list(column) for column in zip(*batch))
            scores = SCALE * embed(questions) @ embed(positives + negatives).T
            loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(batch)))
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    model.max_seq_length = 256
    model.eval()
    return model


def encoder(name: str, items: list[dict], docs: dict[str, Document]) -> tuple[FittedEmbedder, float]:
    """The embedder of setting `name` fitted on `items` (`base`: the packaged model), and seconds the fit took."""
    if name == "base":
        return FittedEmbedder(load_model(), "base"), 0.0
    began = time.perf_counter()
    model = fit(examples(items, docs), SETTINGS[name])
    return FittedEmbedder(model, f"fitted:{name}"), time.perf_counter() - began


def per_document(
    questions: list[dict], corpus: Path, embedder, calibrations: dict[str, Calibration]
) -> tuple[dict[str, dict], dict[str, int | None]]:
    """Figures per calibration (`qa eval --mode per-document --paragraph-evidence`), and each answerable
    question's rank of first hit (None: not in the top 10)."""
    responses: dict[str, dict[int, dict]] = {name: {} for name in calibrations}
    texts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for doc_id, searcher, positions in document_searchers(
            item_documents(questions, corpus), corpus, Path(tmp), embedder
        ):
            texts[doc_id] = searcher.index.documents[doc_id].text
            for name, calibration in calibrations.items():
                searcher.calibration, searcher.threshold = calibration, calibration.threshold
                for i in positions:
                    responses[name][i] = searcher.search(questions[i]["question"], 10, doc_id)
    figures = {}
    for name, by_position in responses.items():
        ordered = [by_position[i] for i in range(len(questions))]
        figures[name], misses = score(texts, questions, ordered, shorter=True)
    return figures, first_hits(questions, misses)


def first_hits(questions: list[dict], misses: list) -> dict[str, int | None]:
    missed = {m[0]: m[1] for m in misses}
    return {q["id"]: missed.get(q["id"], 1) for q in questions if q.get("evidence")}


def rounded(figures: dict) -> dict:
    return {k: round(figures[k], 3) if figures.get(k) is not None else None for k in FIGURES}


def cross_validate(names: list[str], folds: int, papers_per_fold: int, seed: int, only: int | None) -> None:
    items = load_jsonl(TRAIN / "questions.jsonl")
    docs = {d.id: d for d in read_corpus(TRAIN / "papers")}
    papers = sorted(docs)
    random.Random(seed).shuffle(papers)
    fold_of = {paper: n % folds for n, paper in enumerate(papers)}
    results: dict[str, list] = {name: [] for name in names}
    for k in range(folds) if only is None else [only]:
        train = [i for i in items if fold_of[i["document"]] != k]
        held = [p for p in papers if fold_of[p] == k][:papers_per_fold]
        test = [i for i in items if i["document"] in held]
        for name in names:
            embedder, seconds = encoder(name, train, docs)
            began = time.perf_counter()
            figures, firsts = per_document(test, TRAIN / "papers", embedder, {"today": Calibration()})
            row = {
                "fold": k,
                "fit_seconds": round(seconds),
                "eval_seconds": round(time.perf_counter() - began),
                "questions": len(firsts),
                **rounded(figures["today"]),
                "firsts": firsts,
            }
            results[name].append(row)
            print(json.dumps({"setting": name} | {k: v for k, v in row.items() if k != "firsts"}), flush=True)
    ARTIFACTS.mkdir(exist_ok=True)
    folds_run = "all" if only is None else only
    (ARTIFACTS / f"finetune-cv-{'-'.join(names)}-{folds_run}.json").write_text(json.dumps(results, indent=1))
    for name, rows in results.items():
        firsts = [r for row in rows for r in row["firsts"].values()]
        print(
            f"{name}: {len(firsts)} questions, hit@1 {sum(f == 1 for f in firsts) / len(firsts):.3f} "
            f"hit@5 {sum(f is not None and f <= 5 for f in firsts) / len(firsts):.3f} "
            f"mrr@10 {sum(1 / f for f in firsts if f) / len(firsts):.3f}, "
            f"fit {[row['fit_seconds'] for row in rows]} s"
        )


def heldout(name: str) -> None:
    items = load_jsonl(TRAIN / "questions.jsonl")
    docs = {d.id: d for d in read_corpus(TRAIN / "papers")}
    embedder, seconds = encoder(name, items, docs)
    print(f"{name}: fitted in {seconds:.0f} s", flush=True)
    result: dict = {
        "setting": name,
        "fit_seconds": round(seconds),
        "config": asdict(SETTINGS[name]) if name in SETTINGS else None,
    }
    dev_items = load_jsonl(DEV[0])
    with tempfile.TemporaryDirectory() as tmp:
        build(DEV[1], Path(tmp), embedder)
        searcher = open_searcher(Path(tmp), embedder=embedder, calibration=Calibration())
        dev, misses = score(next(iter(searcher.index.documents.values())).text, dev_items, respond(searcher, dev_items))
        tuned = tune(searcher, dev_items, weights=False)
    refit: Calibration = tuned["calibration"]
    result["dev"] = {
        "today": rounded(dev),
        "refit_cross_validated": tuned["after"],
        "refit": refit.as_dict(),
        "firsts": first_hits(dev_items, misses),
    }
    print(json.dumps({"dev": result["dev"]["today"], "refit": tuned["after"]}), flush=True)
    qasper_items = load_jsonl(QASPER[0])
    figures, firsts = per_document(qasper_items, QASPER[1], embedder, {"today": Calibration(), "refit": refit})
    result["qasper"] = {"today": rounded(figures["today"]), "refit": rounded(figures["refit"]), "firsts": firsts}
    print(json.dumps({"qasper": result["qasper"]["today"], "refit": result["qasper"]["refit"]}), flush=True)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"finetune-{name}.json").write_text(json.dumps(result, indent=1))


def within(first: int | None, k: int) -> bool:
    return first is not None and first <= k


def compare(before: str, after: str) -> None:
    """Questions whose first hit moved into or out of rank 1 and the top 5, per set."""
    a, b = (json.loads((ARTIFACTS / f"finetune-{n}.json").read_text()) for n in (before, after))
    for name in ("dev", "qasper"):
        old, new = a[name]["firsts"], b[name]["firsts"]
        for k in (1, 5):
            gained = sorted(q for q in old if within(new[q], k) and not within(old[q], k))
            lost = sorted(q for q in old if within(old[q], k) and not within(new[q], k))
            print(f"{name} hit@{k}: +{len(gained)} {gained} -{len(lost)} {lost}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    cv = commands.add_parser("cv", help="cross-validation over QASPER-train papers")
    cv.add_argument("--settings", default="base,full,last2")
    cv.add_argument("--folds", type=int, default=2)
    cv.add_argument("--papers", type=int, default=12, help="held-out papers scored per fold (seeded sample)")
    cv.add_argument("--seed", type=int, default=0)
    cv.add_argument("--fold", type=int, help="run this fold only (folds run in parallel processes)")
    held = commands.add_parser("heldout", help="fit on all of QASPER train; score dev and QASPER shared")
    held.add_argument("setting", choices=["base", *SETTINGS])
    pair = commands.add_parser("compare", help="questions gained and lost between two `heldout` runs")
    pair.add_argument("before")
    pair.add_argument("after")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.command == "cv":
        names = args.settings.split(",")
        unknown = set(names) - {"base", *SETTINGS}
        if unknown:
            parser.error(f"unknown settings: {', '.join(sorted(unknown))}")
        cross_validate(names, args.folds, args.papers, args.seed, args.fold)
    elif args.command == "heldout":
        heldout(args.setting)
    else:
        compare(args.before, args.after)


if __name__ == "__main__":
    main()
