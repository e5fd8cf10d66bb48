"""A large head grid is rebuilt on the panel's worker thread: the UI thread never calls the rebuild,
the newest request wins, the last finished step shows meanwhile (its note says which), what is drawn
and hovered is the trace's exact rows, and results for a trace no longer shown are dropped.

The grid's size threshold (ASYNC_WEIGHTS) is lowered so that a small trace with queries and keys
(format 2, rebuilt by QKStore) takes the worker's path.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

from memviz.core.trace import StepRecord, Trace
from memviz.panels import head_grid
from memviz.panels.head_grid import HeadGridPanel, binned_max

L, A, KV, D, T = 3, 4, 2, 8, 160
SCALE = 0.35


def qk_trace(seed: int = 0) -> tuple[Trace, np.ndarray, np.ndarray]:
    """A format-2 trace of random queries and keys (grouped heads: 2 per key/value head)."""
    rng = np.random.default_rng(seed)
    model = {"name": "m", "architecture": "llama", "kind": "transformer", "num_layers": L}
    model.update(num_heads=A, num_kv_heads=KV, hidden_size=A * D, vocab_size=50)
    layout = {
        "num_heads": A,
        "num_kv_heads": KV,
        "head_dim": D,
        "scale": [SCALE] * L,
        "sliding_window": [None] * L,
        "softcap": [None] * L,
    }
    trace = Trace(model, attention_layout=layout)
    q = (rng.standard_normal((T, L, A, D)) * 2).astype(np.float32)
    k = (rng.standard_normal((T, L, KV, D)) * 2).astype(np.float32)
    for t in range(T):
        internals = {"attention_q": q[t], "attention_k": k[t]}
        trace.append(
            StepRecord(t % 50, f"tok{t}", False, np.arange(3), np.full(3, 0.3, np.float32), internals)
        )
    assert trace.attention_storage == "qk"
    return trace, q, k


def hand_rows(q: np.ndarray, k: np.ndarray, t: int) -> np.ndarray:
    """softmax((q . k) * scale) over keys 0..t, float64, written out head by head: [L, A, t+1]."""
    out = np.zeros((L, A, t + 1))
    for layer in range(L):
        for head in range(A):
            keys = k[: t + 1, layer, head // (A // KV)].astype(np.float64)
            logits = keys @ q[t, layer, head].astype(np.float64) * SCALE
            e = np.exp(logits - logits.max())
            out[layer, head] = e / e.sum()
    return out


@pytest.fixture
def worker_grid(monkeypatch, make_panel):
    """A HeadGridPanel on a q/k trace that draws through its worker; the rebuild calls recorded
    (thread, step), and an Event that holds the worker inside a rebuild while cleared."""
    monkeypatch.setattr(head_grid, "ASYNC_WEIGHTS", 1)
    trace, q, k = qk_trace()
    calls: list[tuple[threading.Thread, int]] = []
    niceness: list[int] = []
    gate = threading.Event()
    gate.set()
    original = trace.attention_rows_at

    def recorded(step: int) -> np.ndarray:
        calls.append((threading.current_thread(), step))
        if sys.platform.startswith("linux"):
            niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        gate.wait(10)
        return original(step)

    monkeypatch.setattr(trace, "attention_rows_at", recorded)
    view, panel = make_panel(HeadGridPanel, trace, cursor=T - 1, layer=1, head=2)
    panel.niceness = niceness
    return view, panel, trace, q, k, calls, gate


def wait_drawn(qtbot, panel, step: int) -> None:
    qtbot.waitUntil(lambda: panel.step == step and not panel.jobs.busy(), timeout=10000)


def test_the_worker_draws_the_exact_rows(qtbot, worker_grid, head_grid_bar_heights):
    view, panel, trace, q, k, calls, gate = worker_grid
    wait_drawn(qtbot, panel, T - 1)
    for t in (T - 1, 100, 37):
        view.update(cursor=t)
        wait_drawn(qtbot, panel, t)
        # the rows drawn are the trace's own, bit for bit, and equal a hand computation from q and k
        np.testing.assert_array_equal(panel.rows, trace._attention.rows_at(t))
        np.testing.assert_allclose(panel.rows, hand_rows(q, k, t), atol=1e-5, rtol=0)
        # and the bars are those rows' binned maxima in pixel rows, read back from the image
        values, _ = binned_max(panel.rows, panel.bins)
        values = values[..., (np.arange(panel.bins) * values.shape[-1]) // panel.bins]
        expected = np.maximum(np.rint(values * panel.levels), values > 0)
        np.testing.assert_array_equal(head_grid_bar_heights(panel), expected)
        assert f"query {t}" in panel.note.text() or f"tok{t}" in panel.note.text()
    assert calls and all(thread is not threading.main_thread() for thread, _ in calls)
    if sys.platform.startswith("linux"):  # the worker yields a contended core to the UI thread
        assert panel.niceness and min(panel.niceness) >= head_grid.WORKER_NICE


def test_the_last_finished_step_shows_while_the_newest_request_waits(qtbot, worker_grid):
    view, panel, trace, q, k, calls, gate = worker_grid
    wait_drawn(qtbot, panel, T - 1)
    shown = panel.rows
    calls.clear()
    gate.clear()  # the worker stops inside its next rebuild
    view.update(cursor=10)
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=5000)  # 10 is being rebuilt (and held)
    for t in (20, 30, 40, 50):
        view.update(cursor=t)
    # the UI went on: the step drawn and its rows are the last finished, the note names both
    assert panel.step == T - 1 and panel.rows is shown
    assert "drawing query" in panel.note.text() and "tok50" in panel.note.text()
    gate.set()
    wait_drawn(qtbot, panel, 50)
    # the newest request won: 10 was running, 20..40 were replaced before they started
    assert [step for _, step in calls] == [10, 50]
    np.testing.assert_array_equal(panel.rows, trace._attention.rows_at(50))
    assert "drawing" not in panel.note.text()


def test_going_back_to_the_step_drawn_drops_the_waiting_request(qtbot, worker_grid):
    view, panel, trace, q, k, calls, gate = worker_grid
    wait_drawn(qtbot, panel, T - 1)
    calls.clear()
    gate.clear()
    view.update(cursor=70)  # starts (and holds) a rebuild of 70
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=5000)
    view.update(cursor=80)  # waits behind it ...
    view.update(cursor=T - 1)  # ... and is dropped: T - 1 is drawn already
    gate.set()
    qtbot.waitUntil(lambda: not panel.jobs.busy(), timeout=10000)
    qtbot.wait(50)
    assert [step for _, step in calls] == [70]
    assert panel.step == T - 1  # 70 came back late and was not drawn over the cursor's step
    np.testing.assert_array_equal(panel.rows, trace._attention.rows_at(T - 1))


def test_hover_and_tooltip_give_the_exact_numbers(qtbot, worker_grid):
    view, panel, trace, q, k, calls, gate = worker_grid
    view.update(cursor=120)
    wait_drawn(qtbot, panel, 120)
    layer, head = 2, 3
    row = trace.attention_row(120, layer, head)
    key = int(np.argmax(row))
    assert f"most attention: {float(row[key]):.6f} on" in panel.tooltip_for(layer, head)
    line = panel.readout_for(layer, head, range(key, key + 1))
    assert line.endswith(f"key {key} 'tok{key}': {float(row[key]):.3f}")


def test_a_result_for_the_previous_trace_is_dropped(qtbot, worker_grid, monkeypatch):
    view, panel, trace, q, k, calls, gate = worker_grid
    wait_drawn(qtbot, panel, T - 1)
    gate.clear()
    view.update(cursor=60)
    qtbot.waitUntil(lambda: len(calls) >= 2, timeout=5000)
    other, q2, k2 = qk_trace(seed=1)
    drawn: list[np.ndarray] = []
    draw = panel._draw

    def recorded_draw() -> None:
        drawn.append(panel.rows)
        draw()

    monkeypatch.setattr(panel, "_draw", recorded_draw)
    panel.set_trace(other)
    panel.render(view.state)
    gate.set()
    wait_drawn(qtbot, panel, 60)
    qtbot.wait(50)
    # the first trace's step 60 finished after the switch and was never drawn
    assert drawn and all(rows.shape == (L, A, 61) for rows in drawn)
    assert not any(np.array_equal(rows, trace._attention.rows_at(60)) for rows in drawn)
    np.testing.assert_array_equal(panel.rows, other.attention_rows_at(60))
    np.testing.assert_allclose(panel.rows, hand_rows(q2, k2, 60), atol=1e-5, rtol=0)


def test_a_resize_pools_the_rows_again_on_the_worker(qtbot, worker_grid, settle, head_grid_bar_heights):
    view, panel, trace, q, k, calls, gate = worker_grid
    wait_drawn(qtbot, panel, T - 1)
    bins = panel.bins
    n = len(calls)
    panel.resize(420, 300)
    settle(panel)
    qtbot.waitUntil(lambda: panel.heights.shape[-1] == panel.bins and not panel.jobs.busy(), timeout=10000)
    assert panel.bins != bins and len(calls) == n  # pooled again, not rebuilt
    values, _ = binned_max(panel.rows, panel.bins)
    np.testing.assert_array_equal(
        head_grid_bar_heights(panel), np.maximum(np.rint(values * panel.levels), values > 0)
    )


def test_a_failed_rebuild_is_one_line(qtbot, worker_grid, monkeypatch):
    view, panel, trace, q, k, calls, gate = worker_grid
    wait_drawn(qtbot, panel, T - 1)

    def broken(step: int) -> np.ndarray:
        raise OSError("q/k file gone\nsecond line")

    monkeypatch.setattr(trace, "attention_rows_at", broken)
    view.update(cursor=5)
    qtbot.waitUntil(lambda: "could not draw" in panel.note.text(), timeout=5000)
    assert panel.note.text() == "could not draw query 5: q/k file gone"
    assert panel.step == T - 1  # the last good step stays drawn


def test_the_b_minus_a_grid_draws_from_the_worker(qtbot, monkeypatch, make_panel):
    """Two q/k runs of the same shape: the B - A grid's rows come from the worker, equal B's rows
    minus A's, and its signed bars and scale follow them (the scale's peak from the pooled values
    is the rows' own largest |B - A|)."""
    from memviz.core.trace_diff import TraceDiff
    from memviz.panels.head_grid_diff import HeadGridDiffPanel, signed_binned

    monkeypatch.setattr(head_grid, "ASYNC_WEIGHTS", 1)
    (a, *_), (b, *_) = qk_trace(seed=2), qk_trace(seed=3)
    calls: list[threading.Thread] = []
    original = b.attention_rows_at

    def recorded(step: int) -> np.ndarray:
        calls.append(threading.current_thread())
        return original(step)

    monkeypatch.setattr(b, "attention_rows_at", recorded)
    view, panel = make_panel(HeadGridDiffPanel, TraceDiff(a, b), cursor=130, scale="step")
    wait_drawn(qtbot, panel, 130)
    expected = b._attention.rows_at(130) - a._attention.rows_at(130)
    np.testing.assert_array_equal(panel.rows, expected)
    assert calls and threading.main_thread() not in calls
    peak = float(np.abs(expected).max())
    assert panel.level >= peak and panel.level <= 2 * peak  # "step": this step's largest, rounded up
    half = max(1, panel.levels // 2)
    assert panel.bins < 131  # more keys than columns: each column a bin's largest |B - A|
    want = np.rint(np.clip(signed_binned(expected, panel.bins) / panel.level, -1, 1) * half)
    np.testing.assert_array_equal(panel.heights, want)
    assert (panel.heights > 0).any() and (panel.heights < 0).any()
    assert "B \u2212 A at query" in panel.note.text() and "drawing" not in panel.note.text()
