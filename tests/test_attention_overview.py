"""The attention panel at long T (issue 16, item 4): a max-pooled overview, exact tiles when zoomed.

References are independent: numpy max-pooling (a reshape) of the dense matrix the trace rebuilds
(`attention_tensor` of a tiny random-weight GPT-2; `attention_matrix` of a synthetic q/k trace of
2048 steps with a planted previous-token head).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from memviz.core.attention_pool import PooledHead, pool_factor, pooled_matrix, tile_rows

LONG = 2048  # steps of the synthetic trace: pooled 2 x 2 at the panel's 1024 bins
D = 16


def ref_pool(dense: np.ndarray, f: int, signed: bool = False) -> np.ndarray:
    """Max (or largest-magnitude) over f x f blocks of a square matrix, zero-padded to whole blocks."""
    n = dense.shape[0]
    side = -(-n // f)
    padded = np.zeros((side * f, side * f), dtype=np.float32)
    padded[:n, :n] = dense
    blocks = padded.reshape(side, f, side, f)
    hi = blocks.max(axis=(1, 3))
    if not signed:
        return hi
    lo = blocks.min(axis=(1, 3))
    return np.where(hi >= -lo, hi, lo)


def synthetic_trace(T: int, seed: int = 0, layers: int = 1, heads: int = 2):
    """A q/k trace built as a run builds it (Trace.append): head 0 of layer 0 attends to the previous
    token (its query is a large multiple of the previous key), every other head is random."""
    from memviz.core.trace import StepRecord, Trace

    rng = np.random.default_rng(seed)
    layout = {
        "num_heads": heads,
        "num_kv_heads": heads,
        "head_dim": D,
        "scale": [1 / math.sqrt(D)] * layers,
        "sliding_window": [None] * layers,
        "softcap": [None] * layers,
    }
    model = {"name": "synthetic", "architecture": "llama", "kind": "transformer"}
    model.update(num_layers=layers, num_heads=heads)
    trace = Trace(model, attention_layout=layout)
    keys = rng.standard_normal((T, layers, heads, D), dtype=np.float32)
    keys /= np.linalg.norm(keys, axis=-1, keepdims=True)
    for t in range(T):
        q = rng.standard_normal((layers, heads, D), dtype=np.float32)
        if t:
            q[0, 0] = 120.0 * keys[t - 1, 0, 0]
        ids = rng.integers(0, 100, 5)
        probs = np.full(5, 0.2, dtype=np.float32)
        internals = {"attention_q": q, "attention_k": keys[t]}
        # the same tokens whatever the seed: two of these traces can be compared (B - A)
        trace.append(StepRecord(t % 97, f"w{t}", False, ids, probs, internals))
    return trace


@pytest.fixture(scope="module")
def long_trace():
    return synthetic_trace(LONG)


@pytest.fixture(scope="module")
def long_dense(long_trace) -> dict[int, np.ndarray]:
    return {head: long_trace.attention_matrix(0, head) for head in range(2)}


def rows_of(trace, layer, head):
    return lambda a, b: trace.attention_matrix(layer, head, a, b)


# -- the pooling ---------------------------------------------------------------------------------
def test_block_side_is_the_least_power_of_two_within_the_bins():
    assert [pool_factor(n, 1024) for n in (1, 1024, 1025, 2048, 2049, 8192, 8193)] == [1, 1, 2, 2, 4, 8, 16]
    for n in (5, 100, 1000, 4097):
        f = pool_factor(n, 64)
        assert -(-n // f) <= 64 and (f == 1 or -(-n // (f // 2)) > 64) and f & (f - 1) == 0


def test_pooled_gpt2_attention_is_max_pooling_of_the_dense_tensor(run_session, gpt2_dir, sample_text):
    trace = run_session(gpt2_dir, sample_text).trace
    T = len(trace)
    dense = trace.attention_tensor()  # [L, A, T, T]
    layers, heads = trace.attention_shape
    for bins in (4, 8, 16):
        f = pool_factor(T, bins)
        assert f > 1
        for layer in range(layers):
            for head in range(heads):
                pooled, factor = pooled_matrix(rows_of(trace, layer, head), T, bins=bins, block_entries=97)
                assert factor == f
                np.testing.assert_array_equal(pooled, ref_pool(dense[layer, head].astype(np.float32), f))


def test_a_planted_previous_token_head_survives_pooling(long_trace, long_dense):
    pooled, f = pooled_matrix(rows_of(long_trace, 0, 0), LONG, bins=256)
    assert f == 8
    np.testing.assert_array_equal(pooled, ref_pool(long_dense[0], f))
    dense = long_dense[0]
    assert np.all(dense[np.arange(1, LONG), np.arange(LONG - 1)] > 0.9)  # the plant took
    # every diagonal block holds the (t, t-1) peaks: max-pooling shows the stripe at its full value ...
    assert np.all(np.diag(pooled) > 0.9)
    assert np.all(np.tril(pooled, -2) < 0.2)  # ... and nothing far from it
    # where a block mean (what plain downsampling shows) would have faded it to about 1/f
    mean = dense.reshape(LONG // f, f, LONG // f, f).mean(axis=(1, 3))
    assert np.diag(mean).max() < 1.5 / f


def test_growing_row_by_row_equals_pooling_from_scratch(long_trace, long_dense):
    """Rows in uneven chunks, across several doublings of the block side (bins 64: f 1 -> 32)."""
    dense = long_dense[1]
    rows = rows_of(long_trace, 0, 1)
    head = PooledHead(bins=64)
    rng = np.random.default_rng(3)
    stop = 0
    factors = set()
    while stop < LONG:
        stop = min(LONG, stop + int(rng.integers(1, 200)))
        head.extend(rows, stop, block_entries=int(rng.integers(50, 5000)))
        factors.add(head.factor)
        assert head.factor == pool_factor(stop, 64)
        np.testing.assert_array_equal(head.grid(), ref_pool(dense[:stop, :stop], head.factor))
        back = int(rng.integers(1, stop + 1))  # a scrub back between two steps of the run
        np.testing.assert_array_equal(head.grid(back, rows), ref_pool(dense[:back, :back], head.factor))
    assert max(factors) == 32 and len(factors) >= 4  # re-pooled several times on the way
    # a stop before the last row pooled (scrubbing back): the partial block is pooled again
    for n in [1, 63, 64, 65, 700, 1999, LONG, *rng.integers(1, LONG + 1, 40), LONG, 5]:
        np.testing.assert_array_equal(head.grid(int(n), rows), ref_pool(dense[:n, :n], head.factor))
    # a cancelled extension leaves a consistent, shorter head that goes on exactly
    other = PooledHead(bins=64)
    calls = iter(range(10**6))
    assert not other.extend(rows, LONG, cancelled=lambda: next(calls) >= 3, block_entries=LONG * 10)
    assert 0 < other.done < LONG
    assert other.extend(rows, LONG)
    np.testing.assert_array_equal(other.grid(), head.grid())


def test_a_difference_keeps_the_sign_of_the_larger_magnitude(long_trace):
    other = synthetic_trace(300, seed=1)
    n = 300
    # a random head minus a previous-token head: large negatives on the stripe, small positives elsewhere
    diff = long_trace.attention_matrix(0, 1, 0, n) - other.attention_matrix(0, 0, 0, n)
    assert diff.min() < -0.5 and diff.max() > 0
    pooled, f = pooled_matrix(lambda a, b: diff[a:b, :b], n, bins=32, signed=True)
    np.testing.assert_array_equal(pooled, ref_pool(diff, f, signed=True))
    assert (pooled < -0.5).any() and (pooled > 0).any()  # a plain max would have lost the stripe


def test_a_tile_is_the_exact_slice(long_trace, long_dense):
    for r0, r1, c0, c1 in (
        (0, 10, 0, 10),
        (1500, 1800, 1200, 1700),
        (2000, LONG, 0, LONG),
        (5, 6, 900, 1000),
    ):
        tile = tile_rows(rows_of(long_trace, 0, 1), r0, r1, c0, c1, block_entries=70000)
        np.testing.assert_array_equal(tile, long_dense[1][r0:r1, c0:c1])


# -- the panel ---------------------------------------------------------------------------------
def shown_pixels(panel):
    """The overview's coloured pixels as the heatmap holds them."""
    rows, cols = panel.heatmap.data.shape
    return panel.heatmap.image.buffer[:rows, :cols]


def test_panel_shows_the_pooled_overview_then_full_resolution_when_zoomed(
    qtbot, make_panel, settle, long_trace, long_dense
):
    from memviz.panels.attention import AttentionPanel
    from memviz.panels.heatmap_image import colour, native_lookup_table

    view, panel = make_panel(AttentionPanel, long_trace, cursor=LONG - 1, layer=0, head=0)
    # the first overview of a head comes from the worker; the UI thread never built it
    qtbot.waitUntil(
        lambda: panel.heatmap.cell == 2 and panel.heatmap.data.shape == (1024, 1024), timeout=30000
    )
    settle(panel)
    heatmap = panel.heatmap
    np.testing.assert_array_equal(heatmap.data, ref_pool(long_dense[0], 2))
    lut = native_lookup_table(heatmap.cmap_name)
    np.testing.assert_array_equal(shown_pixels(panel), colour(heatmap.data, heatmap.levels, lut))
    assert "max over 2\u00d72" in panel.note.text() and "rebuilding" not in panel.note.text()
    vb = heatmap.plot.getViewBox()
    assert vb.viewRange()[0][1] >= LONG - 1  # the view is in steps, the whole matrix
    # hover: the exact value of the query and key under the mouse, not the block's maximum
    row, col = 1501, 1500
    panel.readout.moved(heatmap.scene_pos_of(row, col))  # the panel's own hover path
    line, tip = panel.readout.text, panel.readout.tooltip
    assert line
    assert f"{long_dense[0][row, col]:.3f}" in line and f"query {row} " in line
    assert f"attention = {long_dense[0][row, col]:.6f}" in tip and "max over its 2\u00d72 block" in tip
    row, col = 1501, 1501  # a cell beside the peak: its own (small) value, while its block shows the peak
    assert f"attention = {long_dense[0][row, col]:.6f}" in heatmap.tooltip_at(row, col)
    assert heatmap.data[row // 2, col // 2] > 0.9 > long_dense[0][row, col]
    # a click on a pooled row goes to that step exactly
    from PySide6.QtCore import Qt

    at = panel.canvas.mapFromScene(heatmap.scene_pos_of(1237, 40))
    clicked = heatmap.cell_at_scene(panel.canvas.mapToScene(at))[0]  # the step under that pixel
    assert abs(clicked - 1237) <= 2 * LONG / vb.height()
    qtbot.mouseClick(panel.canvas.viewport(), Qt.MouseButton.LeftButton, pos=at)
    assert view.state.cursor == clicked and not view.state.follow
    qtbot.waitUntil(lambda: panel.step == clicked)
    n = clicked + 1
    np.testing.assert_array_equal(heatmap.data, ref_pool(long_dense[0][:n, :n], 2))
    # scrubbing below the bins: full resolution again, the exact matrix (a head the full-resolution
    # cache lacks: its 700 x 700 rows come from the worker)
    view.update(cursor=700)
    assert panel.waiting.startswith("rebuilding")
    qtbot.waitUntil(lambda: panel.waiting == "", timeout=30000)
    assert heatmap.cell == 1
    np.testing.assert_array_equal(heatmap.data, long_dense[0][:701, :701])
    view.update(cursor=LONG - 1)
    assert heatmap.cell == 2
    np.testing.assert_array_equal(heatmap.data, ref_pool(long_dense[0], 2))
    # zoom in: the visible part comes at full resolution, over the overview, from the worker
    vb.setRange(xRange=(1400, 1700), yRange=(1450, 1750), padding=0)
    qtbot.waitUntil(lambda: panel.tile is not None and "rebuilding" not in panel.note.text(), timeout=30000)
    tile = panel.tile
    r0, c0, done = tile["r0"], tile["c0"], tile["done"]
    assert r0 <= 1450 and done >= 1750 and c0 <= 1400 and c0 + tile["values"].shape[1] >= 1700
    np.testing.assert_array_equal(
        tile["values"][: done - r0], long_dense[0][r0:done, c0 : c0 + tile["values"].shape[1]]
    )
    drawn = heatmap.tile.pixels[: heatmap.tile.shown_rows]
    np.testing.assert_array_equal(
        drawn, colour(long_dense[0][r0:done, c0 : c0 + drawn.shape[1]], heatmap.levels, lut)
    )
    rect = heatmap.tile.rect
    assert (rect.x(), rect.y()) == (c0, r0)
    assert "full resolution" in panel.note.text()
    # zoom out: the overview alone again
    vb.setRange(xRange=(0, LONG), yRange=(0, LONG), padding=0)
    qtbot.waitUntil(lambda: panel.tile is None, timeout=5000)
    assert heatmap.tile.qimage is None and "full resolution" not in panel.note.text()


def test_panel_grows_its_overview_one_row_at_a_time_and_switches_heads_off_the_ui_thread(
    qtbot, make_panel, long_trace, long_dense
):
    from memviz.panels.attention import AttentionPanel
    from memviz.panels.heatmap_image import colour, native_lookup_table

    view, panel = make_panel(AttentionPanel, long_trace, cursor=1000, layer=0, head=1)
    heatmap = panel.heatmap
    lut = native_lookup_table(heatmap.cmap_name)
    qtbot.waitUntil(lambda: panel.waiting == "", timeout=30000)  # 1001 x 1001: built on the worker
    assert heatmap.cell == 1
    np.testing.assert_array_equal(heatmap.data, long_dense[1][:1001, :1001])
    for t in [
        *range(1020, 1060),
        1030,
        1049,
        1041,
    ]:  # a run's steps across the full-resolution end, then back
        view.update(cursor=t)
        assert panel.waiting == ""  # each step pooled on the UI thread: a few rows at most
        np.testing.assert_array_equal(
            heatmap.data, ref_pool(long_dense[1][: t + 1, : t + 1], pool_factor(t + 1))
        )
        # only the changed rows were coloured again: the pixels are still those of the whole data
        np.testing.assert_array_equal(shown_pixels(panel), colour(heatmap.data, heatmap.levels, lut))
    view.update(head=0)  # another head, never shown: the worker builds it, the old picture stays
    assert panel.waiting.startswith("rebuilding")
    assert "rebuilding" in panel.note.text()
    np.testing.assert_array_equal(heatmap.data, ref_pool(long_dense[1][:1042, :1042], 2))
    qtbot.waitUntil(lambda: panel.waiting == "", timeout=30000)
    np.testing.assert_array_equal(heatmap.data, ref_pool(long_dense[0][:1042, :1042], 2))


def test_panel_shows_b_minus_a_pooled_with_its_sign(qtbot, make_panel, long_trace, long_dense):
    from memviz.core.trace_diff import TraceDiff
    from memviz.panels import colormaps
    from memviz.panels.attention import AttentionPanel

    a = synthetic_trace(1100, seed=1)
    diff = TraceDiff(a, long_trace)
    assert len(diff) == 1100
    expected = long_dense[1][:1100, :1100] - a.attention_matrix(0, 1)
    view, panel = make_panel(AttentionPanel, diff, cursor=1099, layer=0, head=1)
    qtbot.waitUntil(lambda: panel.waiting == "" and panel.heatmap.cell == 2, timeout=30000)
    heatmap = panel.heatmap
    np.testing.assert_array_equal(heatmap.data, ref_pool(expected, 2, signed=True))
    assert heatmap.data.min() < 0 < heatmap.data.max()  # both signs kept
    assert np.abs(heatmap.data).max() == np.abs(expected).max()  # the largest difference, exactly
    assert heatmap.cmap_name == colormaps.DIVERGING
    lo, hi = heatmap.levels
    assert lo == -hi and hi >= np.abs(heatmap.data).max()
    assert f"attention = {expected[1050, 700]:.6f}" in heatmap.tooltip_at(1050, 700)
    assert "largest |B \u2212 A| over 2\u00d72" in panel.note.text()


def test_window_boundaries_are_lines_on_the_matrix(make_panel, long_trace, monkeypatch):
    from memviz.core.trace import Trace
    from memviz.panels.attention import AttentionPanel

    view, panel = make_panel(AttentionPanel, long_trace, cursor=600)
    assert panel.heatmap.boundary_lines == []  # a trace that never slid: none
    # the steps where a sliding window starts (a --slide run's Trace.window_boundaries)
    monkeypatch.setattr(Trace, "window_boundaries", property(lambda self: (256, 512, 1024)), raising=False)
    view.update(cursor=700)
    lines = panel.heatmap.boundary_lines
    assert sorted((line.angle, line.value()) for line in lines) == [
        (0, 256),
        (0, 512),
        (90, 256),
        (90, 512),
    ]  # 1024 is past the step shown
    view.update(cursor=1500)
    assert len(panel.heatmap.boundary_lines) == 6
    monkeypatch.setattr(Trace, "window_boundaries", property(lambda self: ()), raising=False)
    view.update(cursor=701)
    assert panel.heatmap.boundary_lines == []


def test_a_figure_at_long_t_is_the_pooled_view_and_says_so(qtbot, long_trace, long_dense, tmp_path):
    from PySide6.QtGui import QImage

    from memviz.core.view import ViewState
    from memviz.export.render import FigureRenderer
    from memviz.panels.attention import AttentionPanel

    renderer = FigureRenderer(AttentionPanel, long_trace, ViewState(cursor=LONG - 1, theme="talk"))
    try:
        panel = renderer.panel
        assert panel.heatmap.cell == 2  # built before the paint: a figure waits for no worker
        np.testing.assert_array_equal(panel.heatmap.data, ref_pool(long_dense[0], 2))
        assert "Attention (max over 2\u00d72)" in renderer.title()
        path = renderer.save(tmp_path / "attention.png")
        assert not QImage(str(path)).isNull()
    finally:
        renderer.close()


def test_an_attention_csv_is_the_dense_matrix_and_a_huge_one_is_refused(
    long_trace, long_dense, tmp_path, monkeypatch
):
    from memviz.errors import MemvizError
    from memviz.export import data

    monkeypatch.setattr(data, "ATTENTION_CSV_MAX", 300)  # the real bound (2048) would write 80 MB here
    path = data.export_csv(long_trace, tmp_path / "a.csv", series="attention", layer=0, head=0, step=299)
    header, rows = data.read_csv_values(path)
    assert len(header) == 2 + 300 and len(rows) == 300
    np.testing.assert_array_equal(data.as_float_array(rows, 2), long_dense[0][:300, :300].astype(np.float64))
    with pytest.raises(MemvizError, match=r"2048 queries would hold 4,194,304 values: export at most 300"):
        data.export_csv(long_trace, tmp_path / "b.csv", series="attention", layer=0, head=0)
    assert not (tmp_path / "b.csv").exists()


def test_a_sliding_run_shows_its_windows_and_its_own_attention(
    make_panel, run_session, gpt2_dir_factory, sample_text, tmp_path, monkeypatch
):
    """A real --slide run of a tiny GPT-2 with 16 positions: a line where each window starts, and
    the pooled overview is the max-pooling of the attention the trace rebuilds."""
    from memviz.panels.attention import AttentionPanel

    folder = gpt2_dir_factory(tmp_path / "gpt2-16", positions=16)
    trace = run_session(folder, sample_text, slide=True).trace
    T = len(trace)
    boundaries = trace.window_boundaries
    assert T > 16 and len(boundaries) >= 3
    monkeypatch.setattr(AttentionPanel, "bins", 16)  # so few tokens still pool (f = pool_factor(T, 16))
    view, panel = make_panel(AttentionPanel, trace, cursor=T - 1, layer=1, head=2)
    f = pool_factor(T, 16)
    assert panel.heatmap.cell == f > 1
    np.testing.assert_array_equal(panel.heatmap.data, ref_pool(trace.attention_matrix(1, 2), f))
    lines = sorted((line.angle, line.value()) for line in panel.heatmap.boundary_lines)
    assert lines == sorted([(a, s) for s in boundaries for a in (0, 90)])
    view.update(cursor=boundaries[1])  # the lines at or before the step shown only: two windows
    assert len(panel.heatmap.boundary_lines) == 4


def test_the_latest_request_of_a_kind_wins_and_stops_the_older(qtbot):
    import threading

    from memviz.panels.attention_jobs import LatestJobs

    jobs = LatestJobs()
    delivered, started, stopped = [], threading.Event(), threading.Event()
    jobs.done.connect(lambda kind, result: delivered.append((kind, result)))

    def slow(cancelled):
        started.set()
        while not cancelled():  # a long rebuild, block after block
            threading.Event().wait(0.005)
        stopped.set()
        return "old"

    jobs.submit("overview", slow)
    assert started.wait(10)
    jobs.submit("overview", lambda cancelled: "new")
    jobs.submit("tile", lambda cancelled: ["a tile"])  # another kind runs too
    qtbot.waitUntil(lambda: len(delivered) == 2, timeout=10000)
    assert stopped.is_set()
    assert sorted(delivered) == [("overview", "new"), ("tile", ["a tile"])]
    assert not jobs.busy("overview") and not jobs.busy("tile")
    jobs.submit("overview", lambda cancelled: 1 / 0)  # a failure comes back as the exception
    qtbot.waitUntil(lambda: len(delivered) == 3, timeout=10000)
    assert isinstance(delivered[-1][1], ZeroDivisionError)
    jobs.wait()
