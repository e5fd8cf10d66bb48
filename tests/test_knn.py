"""kNN-LM mixing against its formula, by hand, and through a Session with a small exact index."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memviz.backends.registry import load_backend
from memviz.core.sampling import SamplingConfig
from memviz.core.session import RecallSettings, Session
from memviz.errors import MemvizError
from memviz.memory.knn import knn_distribution, mix


def test_knn_distribution_by_hand():
    # Neighbours' next tokens 2, 0, 2 at squared distances 1, 2, 4; temperature 2.
    p = knn_distribution(np.array([2, 0, 2]), np.array([1.0, 2.0, 4.0]), 4, temperature=2.0)
    w = {2: math.exp(-1 / 2) + math.exp(-4 / 2), 0: math.exp(-2 / 2)}
    total = sum(w.values())
    np.testing.assert_allclose(p, [w[0] / total, 0, w[2] / total, 0], rtol=1e-12)


def test_knn_ignores_missing_neighbours_and_large_distances():
    p = knn_distribution(np.array([1, -1, 3]), np.array([1000.0, np.inf, 1001.0]), 5, temperature=1.0)
    e = math.exp(-1.0)  # relative weight of token 3 to token 1: the shift must not underflow to 0/0
    np.testing.assert_allclose(p, [0, 1 / (1 + e), 0, e / (1 + e), 0], rtol=1e-12)
    assert not knn_distribution(np.array([-1, -1]), np.array([1.0, 2.0]), 5, 1.0).any()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    k=st.integers(1, 12),
    lam=st.floats(0.0, 1.0),
    temperature=st.floats(0.1, 10.0),
)
def test_mix_matches_formula(seed, k, lam, temperature):
    rng = np.random.default_rng(seed)
    V = 17
    p_lm = rng.dirichlet(np.ones(V))
    values = rng.integers(-1, V, k)
    distances = rng.random(k) * 5
    p_knn = knn_distribution(values, distances, V, temperature)
    expected_knn = np.zeros(V)
    for v, d in zip(values, distances, strict=True):
        if v >= 0:
            expected_knn[v] += math.exp(-d / temperature)
    if expected_knn.sum() > 0:
        expected_knn /= expected_knn.sum()
    np.testing.assert_allclose(p_knn, expected_knn, rtol=1e-9, atol=1e-15)
    p = mix(p_lm, p_knn, lam)
    if lam == 0 or not expected_knn.any():
        np.testing.assert_array_equal(p, p_lm)
    else:
        np.testing.assert_allclose(p, lam * expected_knn + (1 - lam) * p_lm, rtol=1e-12)
    assert abs(p.sum() - 1) < 1e-9


def test_lambda_zero_is_exactly_the_model():
    rng = np.random.default_rng(0)
    p_lm = rng.dirichlet(np.ones(9)).astype(np.float64)
    p_knn = knn_distribution(np.array([1, 2]), np.array([0.1, 0.2]), 9, 1.0)
    out = mix(p_lm, p_knn, 0.0)
    assert out.dtype == p_lm.dtype
    np.testing.assert_array_equal(out, p_lm)


class ExactIndex:
    """A tiny exact kNN index over numpy arrays (a real one, not a stand-in for the model)."""

    def __init__(self, keys: np.ndarray, values: np.ndarray) -> None:
        self.keys, self.values = keys.astype(np.float32), values.astype(np.int64)

    def search(self, key, k):
        d = ((self.keys - key[None, :]) ** 2).sum(1)
        order = np.argsort(d, kind="stable")[:k]
        ids = np.full(k, -1, np.int64)
        dist = np.full(k, np.inf, np.float32)
        vals = np.full(k, -1, np.int64)
        ids[: len(order)], dist[: len(order)], vals[: len(order)] = order, d[order], self.values[order]
        return ids, dist, vals

    def manifest(self):
        return {"store": "exact-test", "entries": len(self.keys)}


def _run(lstm_dir, memory=None, recall=None, text="The quick brown fox"):
    session = Session(
        load_backend(str(lstm_dir)), sampling=SamplingConfig(temperature=0), memory=memory, recall=recall
    )
    session.feed(text)
    session.run()
    return session


def test_session_with_lambda_zero_equals_no_memory(lstm_dir):
    plain = _run(lstm_dir)
    keys = np.stack(plain.keys)
    index = ExactIndex(keys[:-1], np.array(plain.trace.token_ids[1:]))
    recalled = _run(lstm_dir, index, RecallSettings(k=4, lam=0.0))
    np.testing.assert_array_equal(recalled.trace.array("topk_probs"), plain.trace.array("topk_probs"))
    np.testing.assert_array_equal(recalled.trace.array("topk_ids"), plain.trace.array("topk_ids"))
    np.testing.assert_array_equal(recalled.last_distribution, plain.last_distribution)
    assert recalled.trace.memory == {
        "store": "exact-test",
        "entries": len(keys) - 1,
        "k": 4,
        "lambda": 0.0,
        "temperature": 1.0,
    }
    assert recalled.trace.array("memory_ids").shape == (len(plain.trace), 4)


def test_session_mixes_by_the_formula(lstm_dir):
    plain = _run(lstm_dir)
    keys = np.stack(plain.keys)
    values = np.array(plain.trace.token_ids[1:] + [0])
    index = ExactIndex(keys, values)
    lam, temperature = 0.4, 0.5
    session = Session(
        load_backend(str(lstm_dir)),
        memory=index,
        recall=RecallSettings(k=3, lam=lam, temperature=temperature),
    )
    session.feed("The quick brown fox")
    session.run()
    p_lm = plain.last_distribution
    ids, dist, vals = index.search(session.keys[-1], 3)
    assert ids[0] == len(keys) - 1 and dist[0] == 0  # the same state is its own nearest memory
    weights = np.zeros_like(p_lm)
    for v, d in zip(vals, dist, strict=True):
        weights[v] += math.exp(-float(d) / temperature)
    expected = lam * weights / weights.sum() + (1 - lam) * p_lm
    np.testing.assert_allclose(session.last_distribution, expected, rtol=1e-6, atol=1e-9)
    trace = session.trace
    np.testing.assert_array_equal(trace.array("memory_ids")[-1], ids)
    np.testing.assert_allclose(trace.array("memory_scores")[-1], -dist, rtol=1e-6)
    assert (np.diff(trace.array("memory_scores"), axis=1) <= 0).all()  # best first
    for key in ("lm_topk_ids", "lm_topk_probs", "knn_topk_ids", "knn_topk_probs"):
        assert len(trace.array(key)) == len(trace)


def test_missing_neighbours_score_minus_infinity(lstm_dir):
    plain = _run(lstm_dir, text="ab")
    index = ExactIndex(np.stack(plain.keys)[:1], np.array([3]))
    session = _run(lstm_dir, index, RecallSettings(k=3, lam=0.5), text="ab")
    ids = session.trace.array("memory_ids")
    scores = session.trace.array("memory_scores")
    assert (ids[:, 1:] == -1).all() and np.isneginf(scores[:, 1:]).all()


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"lam": -0.1}, {"lam": 1.1}, {"temperature": 0}])
def test_invalid_recall_settings(kwargs):
    with pytest.raises(MemvizError):
        RecallSettings(**kwargs)
