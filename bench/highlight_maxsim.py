"""Does MaxSim per sentence choose better highlights? The top passage of each dev question (today's ranking), its
sentences scored by MaxSim over their tokens in the passage's own pass, against today's in-context cosine.

    python bench/highlight_maxsim.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qa.evaluation import evidence_spans, highlight_hits, load_jsonl
from qa.index import embedded_sentence_spans, embedded_text, load
from qa.late_interaction import normalize_rows, query_token_states
from qa.onnx_embedding import OnnxEmbedder, mean_pool_normalize
from qa.search import Searcher, best_sentences

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    index = load(ROOT / "index")
    embedder = OnnxEmbedder(index.path, threads=2, encoder="exact")
    searcher = Searcher(index, embedder)
    items = [i for i in load_jsonl(ROOT / "eval" / "dev.jsonl") if i["evidence"]]
    text = next(iter(index.documents.values())).text
    hits: dict[str, list[bool]] = {}
    for item in items:
        query = searcher.speller.correct(item["question"]).corrected
        hidden, mask, encodings = embedder._run([query])
        query_vector = mean_pool_normalize(hidden, mask)[0]
        query_tokens = query_token_states(hidden[0], encodings[0])
        top = int(searcher.rank(query, query_vector).chunks[0])
        chunk = index.chunks[top]
        first, last = index.sentence_offsets[top], index.sentence_offsets[top + 1]
        cosine = index.highlight_vectors[first:last] @ query_vector
        p_hidden, _, p_enc = embedder._run([embedded_text(chunk)])
        offsets = np.array(p_enc[0].offsets)
        states = normalize_rows(p_hidden[0])
        maxsim = []
        for start, end in embedded_sentence_spans(chunk):
            inside = (offsets[:, 1] > offsets[:, 0]) & (offsets[:, 0] >= start) & (offsets[:, 1] <= end)
            maxsim.append(float((query_tokens @ states[inside].T).max(axis=1).mean()) if inside.any() else 0.0)
        maxsim = np.array(maxsim)
        spans = evidence_spans(text, item)
        for name, scores in {"cosine in context (today)": cosine, "MaxSim": maxsim,
                             "mean of cosine and MaxSim": (cosine + maxsim) / 2}.items():
            a, b = best_sentences(scores)
            mark = {"start": chunk.sentences[a][0], "end": chunk.sentences[b][1]}
            hits.setdefault(name, []).append(highlight_hits({"highlights": [mark]}, spans))
    for name, values in hits.items():
        print(f"{name}: highlight@1 {sum(values) / len(values):.3f}")


if __name__ == "__main__":
    main()
