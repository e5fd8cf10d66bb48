"""Sampling: greedy at temperature 0, temperature, top-k, top-p, seeded and reproducible."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memviz.core.sampling import Sampler, SamplingConfig, top_k_of
from memviz.errors import MemvizError


def distribution(seed: int, n: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(n, 0.5))
    return p


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": -0.1},
        {"temperature": -1},
        {"temperature": float("nan")},
        {"temperature": float("inf")},
        {"top_k": -1},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"top_p": -0.2},
    ],
)
def test_invalid_settings_are_rejected(kwargs):
    with pytest.raises(MemvizError):
        SamplingConfig(**kwargs)


def test_manifest_and_strategy():
    assert SamplingConfig(temperature=0).strategy == "greedy"
    assert SamplingConfig(temperature=0.8, top_k=5, top_p=0.9, seed=4).as_manifest() == {
        "strategy": "sample",
        "temperature": 0.8,
        "top_k": 5,
        "top_p": 0.9,
        "seed": 4,
    }


def test_same_seed_same_draws_and_different_seed_differs():
    p = distribution(0)
    cfg = SamplingConfig(temperature=1.0, seed=123)
    s1, s2, s3 = Sampler(cfg), Sampler(cfg), Sampler(SamplingConfig(temperature=1.0, seed=124))
    draws1 = [s1.sample(p) for _ in range(200)]
    draws2 = [s2.sample(p) for _ in range(200)]
    draws3 = [s3.sample(p) for _ in range(200)]
    assert draws1 == draws2
    assert draws1 != draws3
    assert Sampler(cfg).sample(p) == draws1[0]


def test_greedy_is_argmax():
    sampler = Sampler(SamplingConfig(temperature=0, top_k=3, top_p=0.5, seed=9))
    for seed in range(20):
        p = distribution(seed)
        assert sampler.sample(p) == int(np.argmax(p))
        filtered = sampler.filtered(p)
        assert filtered[np.argmax(p)] == 1.0 and filtered.sum() == 1.0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 40), temperature=st.floats(0.2, 3.0))
def test_top_k_keeps_the_k_most_probable(seed, k, temperature):
    p = distribution(seed)
    filtered = Sampler(SamplingConfig(temperature=temperature, top_k=k)).filtered(p)
    tempered = p ** (1 / temperature)
    tempered /= tempered.sum()
    kept = np.argsort(-p)[: min(k, len(p))]
    expected = np.zeros_like(p)
    expected[kept] = tempered[kept] / tempered[kept].sum()
    np.testing.assert_allclose(filtered, expected, rtol=1e-9, atol=1e-12)
    assert np.count_nonzero(filtered) == min(k, len(p))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), top_p=st.floats(0.01, 0.999))
def test_top_p_keeps_the_smallest_set_reaching_p(seed, top_p):
    p = distribution(seed)
    filtered = Sampler(SamplingConfig(temperature=1.0, top_p=top_p)).filtered(p)
    order = np.argsort(-p)
    kept = set(np.flatnonzero(filtered).tolist())
    n = len(kept)
    assert kept == set(order[:n].tolist())  # the most probable tokens
    mass = p[order[:n]].sum()
    assert mass >= top_p - 1e-12  # reaches p
    assert n == 1 or p[order[: n - 1]].sum() < top_p + 1e-12  # and is the smallest such set
    np.testing.assert_allclose(filtered[order[:n]], p[order[:n]] / mass, rtol=1e-9)


def test_top_p_worked_example():
    p = np.array([0.1, 0.5, 0.15, 0.25])
    f = Sampler(SamplingConfig(top_p=0.7)).filtered(p)  # 0.5 + 0.25 = 0.75 >= 0.7
    np.testing.assert_allclose(f, [0, 0.5 / 0.75, 0, 0.25 / 0.75])
    f = Sampler(SamplingConfig(top_p=0.76)).filtered(p)  # needs 0.15 too
    np.testing.assert_allclose(f, [0, 0.5 / 0.9, 0.15 / 0.9, 0.25 / 0.9])
    f = Sampler(SamplingConfig(top_k=2, top_p=0.6)).filtered(p)  # top-k then top-p over the renormalised
    np.testing.assert_allclose(f, [0, 1, 0, 0])


def test_samples_follow_the_filtered_distribution():
    p = np.array([0.05, 0.4, 0.1, 0.3, 0.15])
    sampler = Sampler(SamplingConfig(temperature=1.0, top_k=3, seed=1))
    counts = np.bincount([sampler.sample(p) for _ in range(4000)], minlength=5) / 4000
    expected = np.array([0, 0.4, 0, 0.3, 0.15]) / 0.85
    assert counts[0] == counts[2] == 0  # never outside the top k
    np.testing.assert_allclose(counts, expected, atol=0.03)


def test_temperature_sharpens_and_flattens():
    p = np.array([0.6, 0.3, 0.1])
    cold = Sampler(SamplingConfig(temperature=0.5)).filtered(p)
    hot = Sampler(SamplingConfig(temperature=2.0)).filtered(p)
    np.testing.assert_allclose(cold, p**2 / (p**2).sum())
    np.testing.assert_allclose(hot, np.sqrt(p) / np.sqrt(p).sum())
    # Zero-probability tokens stay impossible at any temperature.
    assert Sampler(SamplingConfig(temperature=3.0)).filtered(np.array([0.0, 1.0]))[0] == 0


def test_top_k_of_is_best_first_with_ties_by_id():
    p = np.array([0.1, 0.3, 0.3, 0.05, 0.25])
    ids, probs = top_k_of(p, 3)
    assert ids.tolist() == [1, 2, 4] and ids.dtype == np.int64 and probs.dtype == np.float32
    assert top_k_of(p, 10)[0].tolist() == [1, 2, 4, 0, 3]


def test_seeded_generation_is_reproducible(run_session, lstm_dir):
    def run(seed: int) -> list[int]:
        sampling = SamplingConfig(temperature=1.0, top_k=10, seed=seed)
        return run_session(lstm_dir, "The quick ", generate=30, sampling=sampling).trace.token_ids

    assert len(run(7)) == len("The quick ") + 30
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_greedy_session_is_the_argmax_chain(run_session, lstm_dir):
    """Greedy generation equals the chain of argmaxes computed with the model's own nn.LSTM."""
    import torch

    from memviz.backends.lstm import load_lstm

    session = run_session(lstm_dir, "def f(", generate=25, sampling=SamplingConfig(temperature=0))
    model, tokenizer, _ = load_lstm(lstm_dir)
    chain = tokenizer.encode("def f(").ids
    with torch.no_grad():
        for _ in range(25):
            chain.append(int(model(torch.tensor([chain]))[0][0, -1].argmax()))
    assert session.trace.token_ids == chain


@pytest.mark.parametrize(
    "config",
    [
        SamplingConfig(temperature=0.8, top_k=5, top_p=0.9, seed=3),
        SamplingConfig(temperature=1.3, top_k=0, top_p=0.6, seed=11),
        SamplingConfig(temperature=0.0),
    ],
    ids=["k5-p0.9", "p0.6", "greedy"],
)
def test_the_trace_records_the_distribution_each_token_was_drawn_from(lstm_dir, tmp_path, config):
    """sample_topk_ids/probs[t]: for a generated token t, the kept top K of the very distribution it
    was drawn from (the model's after temperature, top-k, top-p); a read token's row is -1 / NaN."""
    from memviz.backends.registry import load_backend
    from memviz.core.session import Session
    from memviz.core.trace import Trace

    session = Session(load_backend(str(lstm_dir)), sampling=config)
    session.feed("The quick brown")
    session.run()
    replay = Sampler(config)  # the same seed: the same draws, from the same distributions
    expected: dict[int, np.ndarray] = {}
    session.generate(8)
    while session.pending:
        p = session.last_distribution.copy()
        t = session.step()
        expected[t] = replay.filtered(p)
        assert session.trace.token_ids[t] == replay.draw(expected[t])
    trace = Trace.load(session.trace.save(tmp_path / "run.memviz"))
    ids, probs = trace.array("sample_topk_ids"), trace.array("sample_topk_probs")
    assert ids.shape == probs.shape == trace.array("topk_ids").shape
    for t in range(len(trace)):
        if not trace.generated[t]:
            assert (ids[t] == -1).all() and np.isnan(probs[t]).all()
            continue
        dist = expected[t]
        kept = np.flatnonzero(dist > 0)
        shown = ids[t][ids[t] >= 0]
        assert len(shown) == min(len(kept), ids.shape[1])
        order = kept[np.lexsort((kept, -dist[kept]))][: len(shown)]  # best first, ties to the lower id
        np.testing.assert_array_equal(shown, order)
        np.testing.assert_allclose(probs[t][: len(shown)], dist[shown], rtol=1e-6)
        assert (probs[t][len(shown) :] == 0).all()
        assert dist[trace.token_ids[t]] > 0  # the token drawn is among those kept
        if len(kept) <= ids.shape[1]:
            assert trace.token_ids[t] in shown
        if config.top_k:
            assert len(shown) <= config.top_k
    assert sum(trace.generated) == 8


def test_old_traces_without_the_sampling_record_still_open(run_session, lstm_dir, tmp_path):
    from memviz.core.trace import Trace

    trace = run_session(lstm_dir, "The quick", generate=3).trace
    arrays = {k: v for k, v in trace.to_arrays().items() if not k.startswith("sample_topk")}
    old = Trace.from_arrays(arrays)
    assert not old.has("sample_topk_ids") and len(old) == len(trace)
