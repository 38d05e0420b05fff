"""Late interaction: MaxSim over token states, its compact storage, and (real model) agreement with a brute-force
reference on sentence-transformers' own token states."""

import numpy as np
import pytest

from qa.late_interaction import (
    TokenStates,
    compress,
    kept_tokens,
    maxsim_scores,
    normalize_rows,
    passage_token_states,
    project,
    projection,
    query_token_states,
)


def brute_force_maxsim(query: np.ndarray, passage: np.ndarray) -> float:
    """Mean over question tokens of the best cosine to any passage token, one pair at a time."""
    best = []
    for q in query:
        best.append(max(float(q @ p / np.linalg.norm(q) / np.linalg.norm(p)) for p in passage))
    return sum(best) / len(best)


def random_states(rng, counts, dim=16) -> TokenStates:
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return TokenStates(normalize_rows(rng.normal(size=(offsets[-1], dim))), offsets)


def test_maxsim_matches_brute_force_on_any_subset_of_passages():
    rng = np.random.default_rng(0)
    states = random_states(rng, [3, 1, 7, 4, 2])
    query = normalize_rows(rng.normal(size=(5, 16)))
    passages = np.array([4, 0, 2])
    expected = [brute_force_maxsim(query, states.tokens[states.offsets[p]:states.offsets[p + 1]]) for p in passages]
    assert maxsim_scores(query, states, passages) == pytest.approx(expected, abs=1e-6)


def test_int8_storage_changes_maxsim_by_little_and_takes_a_quarter_of_the_bytes():
    rng = np.random.default_rng(1)
    states = random_states(rng, [30] * 20, dim=384)
    query = normalize_rows(rng.normal(size=(8, 384)))
    small = compress(states)
    everything = np.arange(20)
    assert small.tokens.dtype == np.int8 and small.nbytes < states.nbytes / 3.5
    assert np.abs(maxsim_scores(query, small, everything) - maxsim_scores(query, states, everything)).max() < 0.005


def test_projection_keeps_the_main_directions():
    rng = np.random.default_rng(2)
    basis = np.linalg.qr(rng.normal(size=(64, 8)))[0]  # states that live in an 8-dimensional subspace
    tokens = normalize_rows(rng.normal(size=(500, 8)) @ basis.T)
    states = TokenStates(tokens, np.array([0, 250, 500]))
    reduced = project(states, projection(states, 8))
    query = tokens[:5]
    assert maxsim_scores(normalize_rows(query @ projection(states, 8)), reduced, np.array([0, 1])) == pytest.approx(
        maxsim_scores(query, states, np.array([0, 1])), abs=1e-5)


def test_kept_tokens_leave_out_special_tokens_and_with_pruning_stop_words_and_punctuation():
    tokens = ["[CLS]", "the", "s", "-", "300", "was", "delivered", "[SEP]", "[PAD]"]
    offsets = [(0, 0), (0, 3), (4, 5), (5, 6), (6, 9), (10, 13), (14, 23), (0, 0), (0, 0)]
    assert kept_tokens(tokens, offsets, prune=False).tolist() == [1, 2, 3, 4, 5, 6]
    assert kept_tokens(tokens, offsets, prune=True).tolist() == [2, 4, 6]
    assert kept_tokens(["[CLS]", "the", "[SEP]"], [(0, 0), (0, 3), (0, 0)], prune=True).tolist() == [1]


@pytest.mark.model
def test_maxsim_on_the_onnx_token_states_matches_sentence_transformers(real_searcher, real_embedder):
    """Tolerance: float 2e-3 (the ONNX graph and torch differ in the last digits), int8 storage 6e-3."""
    onnx = real_searcher.embedder
    question = "When did Russia deliver the S-300 air defence system to Iran?"
    passages = ["In 2016 Russia finally delivered the S-300 system, years after the contract was signed.",
                "Trade between the two countries remains small compared with China's.",
                "Sanctions. The nuclear deal lifted some of the sanctions on Iran in January 2016."]
    hidden, _, encodings = onnx._run([question])
    query = query_token_states(hidden[0], encodings[0])
    states = passage_token_states(onnx, passages, prune=False)
    reference_states = real_embedder.model.encode([question, *passages], output_value="token_embeddings")
    reference_query = reference_states[0].numpy()[1:-1]  # without [CLS] and [SEP]
    expected = [brute_force_maxsim(reference_query, r.numpy()[1:-1]) for r in reference_states[1:]]
    everything = np.arange(len(passages))
    assert maxsim_scores(query, states, everything) == pytest.approx(expected, abs=2e-3)
    assert maxsim_scores(query, compress(states), everything) == pytest.approx(expected, abs=6e-3)
    assert int(np.argmax(expected)) == 0
