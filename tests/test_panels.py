"""The data panels: what they hold is the trace's own numbers, and clicks and hovers do what they say."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QImage

from memviz.core.view import ViewState
from memviz.panels.attention import AttentionPanel
from memviz.panels.distribution import DistributionPanel
from memviz.panels.head_distance import HeadDistancePanel, distance_text
from memviz.panels.head_grid import HeadGridPanel, binned_max
from memviz.panels.heatmap import Heatmap
from memviz.panels.lstm_gates import GatesPanel
from memviz.panels.lstm_span import SpanPanel
from memviz.panels.lstm_state import StatePanel
from memviz.panels.registry import PANEL_CLASSES
from memviz.panels.view_model import ViewModel

TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n"

#: how many heatmaps each panel shows (each with its colour bar); a new panel says how many it has
HEATMAPS = {
    "gates": 4,
    "state": 2,
    "span": 1,
    "prediction": 0,  # lines, no heatmap
    "attention": 1,
    "heads": 0,
    "head-distance": 1,
    "distribution": 0,
    "logit-lens": 1,
    "compare": 0,  # lines and bars
    "memory": 0,
    "match": 0,  # a table of pattern matches
}


@pytest.fixture(scope="module")
def lstm_session(run_session, lstm_dir):
    return run_session(lstm_dir, TEXT)


@pytest.fixture(scope="module")
def gpt2_session(run_session, gpt2_dir):
    return run_session(gpt2_dir, TEXT * 3, generate=6)


def heatmaps_of(panel) -> list[Heatmap]:
    """The panel's heatmaps: pyqtgraph items in its canvas's scene, not QObject children (a table
    panel, the Match panel, has no canvas and no heatmap)."""
    canvas = getattr(panel, "canvas", None)
    return [] if canvas is None else [item for item in canvas.scene().items() if isinstance(item, Heatmap)]


def viewport_point(canvas, scene_pos) -> QPoint:
    return canvas.mapFromScene(scene_pos)


def click(qtbot, canvas, scene_pos) -> None:
    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=viewport_point(canvas, scene_pos))


def hover(qtbot, canvas, scene_pos) -> None:
    point = viewport_point(canvas, scene_pos)
    qtbot.mouseMove(canvas.viewport(), point + QPoint(1, 0))
    qtbot.mouseMove(canvas.viewport(), point)


def test_registry_names_and_architectures():
    names = [cls.name for cls in PANEL_CLASSES]
    assert len(names) == len(set(names))
    assert {"gates", "state", "span", "attention", "heads", "head-distance", "distribution"} <= set(names)
    by_arch = {cls.name: cls.architectures for cls in PANEL_CLASSES}
    assert (
        by_arch["gates"] == ("lstm",) and by_arch["attention"] == ("gpt2",) and by_arch["distribution"] == ()
    )


# -- LSTM ----------------------------------------------------------------------------------------
def test_gates_images_are_the_trace_gates(qtbot, make_panel, lstm_session):
    trace = lstm_session.trace
    gates = trace.array("gates")
    view, panel = make_panel(GatesPanel, trace, cursor=20, layer=1)
    assert len(panel.heatmaps) == 4  # i, f, g, o
    for g, heatmap in enumerate(panel.heatmaps):
        np.testing.assert_array_equal(heatmap.data, gates[:21, 1, g].T)
        assert heatmap.image.cells == (gates.shape[3], 21)
        assert heatmap.cursor_col == 20
    assert panel.heatmaps[0].levels == (0.0, 1.0) and panel.heatmaps[2].levels == (-1.0, 1.0)
    view.update(layer=2, cursor=len(trace) - 1)  # a layer switch and the last step
    np.testing.assert_array_equal(panel.heatmaps[1].data, gates[:, 2, 1].T)
    assert panel._spins["layer"].value() == 2
    panel._spins["layer"].setValue(0)  # the selector asks the view model
    assert view.state.layer == 0
    np.testing.assert_array_equal(panel.heatmaps[3].data, gates[:, 0, 3].T)
    view.update(cursor=5)  # scrubbing back shows the first 6 steps only
    assert panel.heatmaps[0].data.shape == (gates.shape[3], 6)


def test_gates_tooltip_and_click(qtbot, make_panel, lstm_session):
    trace = lstm_session.trace
    view, panel = make_panel(GatesPanel, trace, cursor=30, layer=0)
    heatmap = panel.heatmaps[1]
    value = float(trace.array("gates")[7, 0, 1, 4])
    text = heatmap.tooltip_at(4, 7)
    assert (
        f"{value:.6f}" in text
        and "unit 4" in text
        and repr(trace.token_text[7])[1:-1].replace(" ", "\u2423") in text
    )
    hover(qtbot, panel.canvas, heatmap.scene_pos_of(4, 7))
    assert heatmap.last_tooltip == text
    click(qtbot, panel.canvas, heatmap.scene_pos_of(9, 3))
    assert view.state.unit == 9


def test_state_panel_heatmaps_curves_and_unit_click(qtbot, make_panel, lstm_session):
    trace = lstm_session.trace
    cell, hidden = trace.array("cell"), trace.array("hidden")
    view, panel = make_panel(StatePanel, trace, cursor=25, layer=2, unit=3)
    np.testing.assert_array_equal(panel.heatmaps["cell"].data, cell[:26, 2].T)
    np.testing.assert_array_equal(panel.heatmaps["hidden"].data, hidden[:26, 2].T)
    lo, hi = panel.heatmaps["cell"].levels
    # symmetric, covering each step's 98th percentile of |c| over the whole run
    assert lo == -hi and hi >= np.percentile(np.abs(cell[:, 2]), 98, axis=-1).max()
    x, y = panel.curves["cell"].getData()
    np.testing.assert_array_equal(y, cell[:26, 2, 3])
    np.testing.assert_array_equal(panel.curves["hidden"].getData()[1], hidden[:26, 2, 3])
    assert panel.heatmaps["cell"].highlight_row == 3
    click(qtbot, panel.canvas, panel.heatmaps["hidden"].scene_pos_of(11, 10))
    assert view.state.unit == 11
    np.testing.assert_array_equal(panel.curves["cell"].getData()[1], cell[:26, 2, 11])
    assert panel.heatmaps["cell"].highlight_row == 11


def test_span_is_the_product_of_forget_gates(qtbot, make_panel, lstm_session):
    trace = lstm_session.trace
    f = trace.array("gates")[:, 1, 1].astype(np.float64)  # [T, H]
    t = 40
    view, panel = make_panel(SpanPanel, trace, cursor=t, layer=1, unit=2)
    expected = np.ones((f.shape[1], t + 1))
    for s in range(t + 1):
        expected[:, s] = np.prod(f[s + 1 : t + 1], axis=0)
    np.testing.assert_allclose(panel.retention, expected, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(panel.span, expected.sum(axis=1), rtol=1e-9)
    np.testing.assert_array_equal(panel.heatmap.data, panel.retention)
    assert "forget" in panel.toolTip() and "1/(1-f)" in panel.toolTip()
    view.update(cursor=t + 5)  # later steps extend the cached sums
    expected_last = np.prod(f[t + 1 : t + 6], axis=0)
    np.testing.assert_allclose(panel.retention[:, t], expected_last, rtol=1e-9)
    x, height = panel.bars.opts["x"], panel.bars.opts["height"]
    np.testing.assert_allclose(height, panel.span)
    assert list(x) == list(range(f.shape[1]))

    def products(gates: np.ndarray, now: int) -> np.ndarray:
        return np.stack([np.prod(gates[s + 1 : now + 1], axis=0) for s in range(now + 1)], axis=1)

    # one step at a time (each multiplies the kept columns by the new forget gate), then back, then
    # another layer: every column is still the product of the gates since it was written
    steps = range(t + 6, min(len(trace), t + 30))
    assert len(steps) >= 10
    for now in steps:
        view.update(cursor=now)
        np.testing.assert_allclose(panel.retention, products(f, now), rtol=1e-9, atol=1e-300)
    for cursor, layer in ((t - 10, 1), (t - 9, 0), (t + 2, 0)):
        view.update(cursor=cursor, layer=layer)
        gates = trace.array("gates")[:, layer, 1].astype(np.float64)
        np.testing.assert_allclose(panel.retention, products(gates, cursor), rtol=1e-9, atol=1e-300)
        np.testing.assert_allclose(panel.span, products(gates, cursor).sum(axis=1), rtol=1e-9)


# -- GPT-2 ---------------------------------------------------------------------------------------
def test_attention_image_row_and_selectors(qtbot, make_panel, gpt2_session):
    trace = gpt2_session.trace
    t = 30
    view, panel = make_panel(AttentionPanel, trace, cursor=t, layer=2, head=1)
    np.testing.assert_array_equal(panel.heatmap.data, trace.attention_matrix(2, 1, upto=t + 1))
    np.testing.assert_array_equal(panel.heatmap.data[t], trace.attention_at(t)[2, 1])
    assert panel.heatmap.highlight_row == t
    assert panel.heatmap.colorbar is not None and panel.heatmap.levels == (0.0, 1.0)
    panel._spins["head"].setValue(3)
    assert view.state.head == 3
    np.testing.assert_array_equal(panel.heatmap.data, trace.attention_matrix(2, 3, upto=t + 1))
    text = panel.heatmap.tooltip_at(t, 4)
    assert f"{float(trace.attention_at(t)[2, 3, 4]):.6f}" in text and "query 30" in text and "key 4" in text
    click(qtbot, panel.canvas, panel.heatmap.scene_pos_of(12, 2))  # a row is a step: go there
    assert view.state.cursor == 12 and not view.state.follow
    assert panel.heatmap.data.shape == (13, 13)


def test_head_grid_rows_click_and_tooltip(qtbot, make_panel, head_grid_bar_heights, gpt2_session):
    trace = gpt2_session.trace
    t = len(trace) - 1
    view, panel = make_panel(HeadGridPanel, trace, cursor=t, layer=0, head=0)
    layers, heads = panel.shape
    assert (layers, heads) == trace.attention_at(0).shape[:2]
    np.testing.assert_array_equal(panel.rows, trace.attention_at(t))
    # the image's bars: per column, the filled pixel rows (from the baseline up) are the binned
    # attention on the 0..1 scale, rounded to the cell's pixel rows, at least 1 for any weight > 0
    values, _ = binned_max(trace.attention_at(t).astype(np.float32), panel.bins)
    values = values[..., (np.arange(panel.bins) * values.shape[-1]) // panel.bins]  # short rows: spread
    expected = np.maximum(np.rint(values * panel.levels), values > 0)
    np.testing.assert_array_equal(head_grid_bar_heights(panel), expected)
    click(qtbot, panel.canvas, panel.scene_pos_of(2, 3))
    assert (view.state.layer, view.state.head) == (2, 3)
    assert panel.selected.rect().x() == 3 and panel.selected.rect().y() == 2
    row = trace.attention_at(t)[1, 2]
    text = panel.tooltip_for(1, 2)
    assert f"{float(row.max()):.6f}" in text and "layer 1, head 2" in text
    hover(qtbot, panel.canvas, panel.scene_pos_of(1, 2))
    assert panel.last_tooltip == text


def test_binned_max_keeps_peaks():
    row = np.zeros((1, 1, 1000), dtype=np.float32)
    row[0, 0, 637] = 0.9
    values, centres = binned_max(row, 96)
    assert values.shape == (1, 1, 96) and values.max() == np.float32(0.9)
    assert 0 < centres[0] < centres[-1] < 1
    short, _ = binned_max(row[..., :10], 96)
    np.testing.assert_array_equal(short, row[..., :10])


def test_head_distance_is_the_traces_mean_distance(qtbot, make_panel, gpt2_session):
    trace = gpt2_session.trace
    view, panel = make_panel(HeadDistancePanel, trace, cursor=20, layer=1, head=2)
    np.testing.assert_allclose(panel.heatmap.data, trace.mean_attention_distance(upto=21), rtol=1e-5)
    view.update(cursor=len(trace) - 1)
    np.testing.assert_allclose(panel.heatmap.data, trace.mean_attention_distance(), rtol=1e-5)
    view.update(cursor=7)  # scrub back: cached sums, same numbers
    np.testing.assert_allclose(panel.heatmap.data, trace.mean_attention_distance(upto=8), rtol=1e-5)
    lo, hi = panel.heatmap.levels
    assert lo == 0 and hi >= panel.heatmap.data.max()
    labels = [text for _, _, text, _ in panel.labels.items]
    assert labels[0] == distance_text(panel.heatmap.data[0, 0]) and len(labels) == panel.heatmap.data.size
    assert distance_text(12.34) == "12.3" and distance_text(255.94) == "256"
    click(qtbot, panel.canvas, panel.heatmap.scene_pos_of(2, 3))
    assert (view.state.layer, view.state.head) == (2, 3)


def test_distribution_bars_and_actual_next_token(qtbot, make_panel, gpt2_session):
    trace = gpt2_session.trace
    backend = gpt2_session.backend
    t = 10
    view, panel = make_panel(DistributionPanel, trace, cursor=t)
    np.testing.assert_array_equal(panel.probs, trace.array("topk_probs")[t])
    np.testing.assert_array_equal(panel.ids, trace.array("topk_ids")[t])
    np.testing.assert_allclose(panel.bars.opts["width"], trace.array("topk_probs")[t])
    assert panel.next_id == trace.token_ids[t + 1]
    ids = list(trace.array("topk_ids")[t])
    assert panel.highlight == (ids.index(panel.next_id) if panel.next_id in ids else None)
    assert panel.labels == [backend.token_text(int(i)) for i in ids]  # from the trace's own vocabulary
    # greedy generation: each generated token is the top candidate of the step before
    first_generated = trace.generated.index(True)
    view.update(cursor=first_generated - 1)
    assert panel.highlight == 0
    assert list(panel.actual_bar.opts["width"]) == [pytest.approx(float(panel.probs[0]))]
    assert "sampled" in panel.note.text()
    view.update(cursor=len(trace) - 1)  # the last step: nothing came next yet
    assert panel.next_id is None and panel.highlight is None


# -- every panel ---------------------------------------------------------------------------------
def test_every_panel_says_how_many_heatmaps_it_has():
    assert set(HEATMAPS) == {cls.name for cls in PANEL_CLASSES}


@pytest.mark.parametrize("theme", ["dark", "talk"])
def test_every_panel_draws_in_both_themes(qtbot, make_panel, lstm_session, gpt2_session, theme):
    drawn = []
    for cls in PANEL_CLASSES:
        for session in (lstm_session, gpt2_session):
            trace = session.trace
            if not cls.supports(trace):
                continue
            view, panel = make_panel(cls, trace, cursor=len(trace) // 2, layer=1, head=1, unit=1, theme=theme)
            panel.apply_theme(view.state)
            image = panel.grab().toImage().convertToFormat(QImage.Format.Format_ARGB32)
            assert (image.width(), image.height()) == (900, 500)
            pixels = np.frombuffer(image.constBits(), np.uint32, count=900 * 500)
            assert len(np.unique(pixels)) > 5, cls.name  # something is drawn
            title = panel.figure_title(view.state)
            assert (
                cls.title in title and f"step {len(trace) // 2} " in title
            )  # 0-based, as on the axes and --step
            heatmaps = heatmaps_of(panel)
            assert len(heatmaps) == HEATMAPS[cls.name], cls.name
            assert all(heatmap.colorbar is not None for heatmap in heatmaps), cls.name
            drawn.append((cls.name, trace.architecture))
    # every data panel was drawn on the runs it supports (the memory panel needs a memory run)
    assert set(drawn) == {
        ("gates", "lstm"),
        ("state", "lstm"),
        ("span", "lstm"),
        ("attention", "gpt2"),
        ("heads", "gpt2"),
        ("head-distance", "gpt2"),
        ("distribution", "lstm"),
        ("distribution", "gpt2"),
    }


@pytest.mark.parametrize("cls", PANEL_CLASSES, ids=lambda cls: cls.name)
def test_every_heatmap_has_a_colour_bar(qtbot, make_panel, lstm_session, gpt2_session, cls):
    trace = lstm_session.trace if cls.supports(lstm_session.trace) else gpt2_session.trace
    _, panel = make_panel(cls, trace, cursor=5)
    heatmaps = heatmaps_of(panel)
    assert len(heatmaps) == HEATMAPS[cls.name]
    for heatmap in heatmaps:
        assert heatmap.colorbar is not None and heatmap.colorbar.scene() is panel.canvas.scene()
        assert heatmap.colorbar.isVisible()


def grab_pixels(panel) -> np.ndarray:
    image = panel.grab().toImage().convertToFormat(QImage.Format.Format_ARGB32)
    return np.frombuffer(image.constBits(), np.uint32, count=image.width() * image.height()).copy()


@pytest.mark.parametrize("cls", PANEL_CLASSES, ids=lambda cls: cls.name)
def test_panels_ignore_an_empty_trace_and_a_new_run(qtbot, lstm_session, gpt2_session, cls):
    trace = lstm_session.trace if cls.supports(lstm_session.trace) else gpt2_session.trace

    def panel_of(view: ViewModel):
        panel = cls(view)
        qtbot.addWidget(panel)
        panel.resize(700, 400)
        return panel

    view = ViewModel()
    panel = panel_of(view)
    panel.render(view.state)  # no trace yet
    panel.set_trace(None)
    panel.render(ViewState(cursor=3))
    assert panel.figure_title(ViewState(cursor=3)) == cls.title
    panel.set_trace(trace)
    panel.render(ViewState(cursor=3, layer=99, head=99, unit=9999))  # out of range: clamped ...
    assert panel.trace is trace and "step 3 " in panel.figure_title(ViewState(cursor=3))
    # ... to the last layer, head and unit: the same picture as a fresh panel asked for those
    model = trace.model
    last = ViewState(
        cursor=3,
        layer=int(model["num_layers"]) - 1,
        head=max(int(model.get("num_heads") or 1) - 1, 0),
        unit=int(model["hidden_size"]) - 1,
    )
    fresh = panel_of(ViewModel())
    fresh.set_trace(trace)
    fresh.render(last)
    for _ in range(2):  # both settle (the views' ranges are applied when they paint)
        grab_pixels(panel), grab_pixels(fresh)
    np.testing.assert_array_equal(grab_pixels(panel), grab_pixels(fresh))
