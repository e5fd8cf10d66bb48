"""The Trace's read API against the format's own dense attention, on a real tiny GPT-2 run.

The views read attention only through attention_shape / attention_rows_at / attention_row /
attention_matrix / mean_attention_distance; each must equal the matching slice of the dense
[L, A, T, T] tensor that format 1 writes (attention_tensor), before and after a save.
"""

from __future__ import annotations

import numpy as np
import pytest

from memviz.core.trace import StepRecord, Trace
from memviz.panels.attention_cache import AttentionCache


@pytest.fixture(scope="module")
def gpt2_trace(run_session, gpt2_dir) -> Trace:
    return run_session(gpt2_dir, generate=6).trace


def expected_distance(dense: np.ndarray, upto: int) -> np.ndarray:
    """Mean over queries q < upto of sum_k a[q, k] (q - k), in float64 from the dense tensor."""
    d = dense.astype(np.float64)
    q = np.arange(d.shape[2])[:, None]
    back = (q - np.arange(d.shape[3])[None, :]).clip(min=0)
    return (d[:, :, :upto, :] * back[None, None, :upto, :]).sum(axis=(2, 3)) / upto


@pytest.mark.parametrize("reload", [False, True])
def test_read_api_equals_the_dense_attention(gpt2_trace, tmp_path, reload):
    trace = Trace.load(gpt2_trace.save(tmp_path / "run.memviz")) if reload else gpt2_trace
    dense = trace.attention_tensor()
    T = len(trace)
    assert trace.steps == T >= 20 and dense.shape == (3, 4, T, T)
    assert trace.attention_shape == (3, 4)
    assert not np.triu(dense, 1).any()
    np.testing.assert_allclose(dense.sum(-1), 1.0, atol=1e-5)
    for t in range(T):
        np.testing.assert_array_equal(trace.attention_rows_at(t), dense[:, :, t, : t + 1])
        for layer, head in ((0, 0), (2, 3), (1, 2)):
            np.testing.assert_array_equal(trace.attention_row(t, layer, head), dense[layer, head, t, : t + 1])
    for layer in range(3):
        for head in range(4):
            np.testing.assert_array_equal(trace.attention_matrix(layer, head), dense[layer, head])
    for start, stop in ((0, 1), (0, 7), (3, 9), (T - 1, T), (5, 5), (0, T + 10)):
        block = trace.attention_matrix(2, 1, start, stop)
        n = min(stop, T)
        assert block.shape == (n - start, n) and block.dtype == np.float32
        np.testing.assert_array_equal(block, dense[2, 1, start:n, :n])
    np.testing.assert_array_equal(trace.attention_matrix(1, 3, upto=8), dense[1, 3, :8, :8])  # the old name
    for upto in (1, 2, 11, T):
        np.testing.assert_allclose(
            trace.mean_attention_distance(upto), expected_distance(dense, upto), rtol=1e-5
        )
    with pytest.raises(IndexError):
        trace.attention_rows_at(T)
    with pytest.raises(IndexError):
        trace.attention_row(-1, 0, 0)


def test_attention_shape_without_attention(run_session, lstm_dir):
    lstm = run_session(lstm_dir, text="The fox")
    assert lstm.trace.attention_shape is None and not lstm.trace.has("attention")
    before = Trace({"name": "g", "architecture": "gpt2", "num_layers": 2, "num_heads": 5})
    assert before.attention_shape == (2, 5) and len(before) == 0  # from the manifest, before any step


def test_columns_are_read_through_array(gpt2_trace):
    assert {"topk_ids", "topk_probs"} <= set(gpt2_trace.column_names)
    for key in gpt2_trace.column_names:
        assert gpt2_trace.has(key) and len(gpt2_trace.array(key)) == len(gpt2_trace)
    with pytest.raises(KeyError):
        gpt2_trace.array("gates")


def test_attention_cache_grows_with_the_run_and_forgets_old_heads():
    """The panels' cache gains rows as the run grows (past its first capacities, 64 and 128), keeps
    only a few heads, and always equals the trace's own matrix, also after a head was dropped."""
    rng = np.random.default_rng(1)
    trace = Trace({"name": "m", "architecture": "gpt2", "num_layers": 2, "num_heads": 3})
    cache = AttentionCache(heads_kept=2)
    for t in range(150):
        row = rng.random((2, 3, t + 1)).astype(np.float32)
        trace.append(
            StepRecord(t, str(t), False, np.arange(2), np.full(2, 0.5, np.float32), {"attention_row": row})
        )
        if t % 9 == 0 or t > 140:
            dense = trace.attention_tensor()
            for layer, head in ((1, 0), (0, 2), (1, 2)):  # three heads through a cache of two
                np.testing.assert_array_equal(cache.matrix(trace, layer, head), dense[layer, head])
            np.testing.assert_array_equal(
                cache.matrix(trace, 1, 0, stop=t // 2 + 1), dense[1, 0, : t // 2 + 1, : t // 2 + 1]
            )
            assert len(cache) <= 2
    assert cache.matrix(trace, 0, 1).shape == (150, 150)
