"""The recurrent panels on every recurrent cell: a GRU's three gates (r, z, n) and its h alone, the span
as the running product of z, and layers of different sizes showing their own units only (the rest of
the padded internals is not drawn). Real tiny models run through real Sessions."""

from __future__ import annotations

import numpy as np
import pytest

from memviz.core.trace import Trace
from memviz.panels.heatmap import Heatmap
from memviz.panels.lstm_gates import GatesPanel
from memviz.panels.lstm_span import SpanPanel
from memviz.panels.lstm_state import StatePanel
from memviz.panels.registry import PANEL_CLASSES

SIZES = (9, 5, 7)
TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def runs(run_session, rnn_dir_factory, tmp_path_factory) -> dict[str, Trace]:
    folder = tmp_path_factory.mktemp("recurrent-panels")
    return {
        cell: run_session(rnn_dir_factory(folder / cell, cell=cell, sizes=SIZES), text=TEXT).trace
        for cell in ("gru", "lstm")
    }


def scene_heatmaps(panel) -> list[Heatmap]:
    return [item for item in panel.canvas.scene().items() if isinstance(item, Heatmap)]


def test_every_recurrent_panel_is_offered_for_a_gru(runs):
    gru = runs["gru"]
    assert gru.kind == "recurrent" and gru.architecture == "gru"
    offered = {cls.name for cls in PANEL_CLASSES if cls.supports(gru)}
    assert {"gates", "state", "span", "distribution"} <= offered
    assert not {"attention", "heads", "head-distance"} & offered


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_gru_gates_are_three_heatmaps_of_the_layers_own_units(make_panel, runs, layer):
    trace = runs["gru"]
    gates = trace.array("gates")  # [T, L, 3, widest]
    t = len(trace) - 3
    view, panel = make_panel(GatesPanel, trace, cursor=t, layer=layer, unit=8)
    size = SIZES[layer]
    assert [h.value_name for h in panel.heatmaps] == ["r", "z", "n"]
    assert len(scene_heatmaps(panel)) == 3  # the fourth is not drawn
    assert [h.plot.titleLabel.text.split(":")[0] for h in panel.heatmaps] == ["r", "z", "n"]
    assert [h.levels for h in panel.heatmaps] == [(0.0, 1.0), (0.0, 1.0), (-1.0, 1.0)]
    for g, heatmap in enumerate(panel.heatmaps):
        np.testing.assert_array_equal(heatmap.data, gates[: t + 1, layer, g, :size].T)
        assert heatmap.image.cells == (size, t + 1)
    assert not gates[:, layer, :, size:].any()  # what is left out is the padding
    assert panel.units.combo.itemText(1) == "variance of z"
    assert panel.heatmaps[0].highlight_row == min(8, size - 1)  # the unit clamped to the layer
    assert "z how much of h is kept" in panel.toolTip()


def test_gates_panel_follows_the_cell_from_trace_to_trace(make_panel, runs):
    gru, lstm = runs["gru"], runs["lstm"]
    view, panel = make_panel(GatesPanel, gru, cursor=5, layer=1)
    assert len(panel.heatmaps) == 3
    panel.set_trace(lstm)
    panel.render(view.state)
    assert [h.value_name for h in panel.heatmaps] == ["i", "f", "g", "o"]
    assert len(scene_heatmaps(panel)) == 4
    gates = lstm.array("gates")
    for g, heatmap in enumerate(panel.heatmaps):
        np.testing.assert_array_equal(heatmap.data, gates[:6, 1, g, : SIZES[1]].T)
    assert panel.units.combo.itemText(1) == "variance of f"
    panel.set_trace(gru)
    panel.render(view.state)
    assert len(scene_heatmaps(panel)) == 3


def test_gru_state_panel_shows_h_alone(make_panel, runs):
    trace = runs["gru"]
    hidden = trace.array("hidden")
    t = len(trace) - 2
    view, panel = make_panel(StatePanel, trace, cursor=t, layer=2, unit=3)
    assert list(panel.heatmaps) == ["hidden"]
    assert len(scene_heatmaps(panel)) == 1
    np.testing.assert_array_equal(panel.heatmaps["hidden"].data, hidden[: t + 1, 2, : SIZES[2]].T)
    np.testing.assert_array_equal(panel.curves["hidden"].yData, hidden[: t + 1, 2, 3])
    assert panel.curves["cell"] not in panel.plot.items  # no c line, no c in the legend
    assert [label.text for _, label in panel.legend.items] == ["h"]
    assert panel.units.combo.itemText(2) == "h now"
    assert "GRU has no separate cell" in panel.toolTip()


def test_mixed_size_lstm_state_shows_each_layers_units_and_levels(make_panel, runs):
    trace = runs["lstm"]
    view, panel = make_panel(StatePanel, trace, cursor=0, layer=1, unit=2)
    t = len(trace) - 1
    for cursor in range(1, t + 1):  # played step by step: the running levels see every step
        view.update(cursor=cursor)
    assert list(panel.heatmaps) == ["cell", "hidden"]
    size = SIZES[1]
    for key in ("cell", "hidden"):
        column = trace.array(key)
        np.testing.assert_array_equal(panel.heatmaps[key].data, column[:, 1, :size].T)
        # the levels from the layer's own units (padding zeros would pull the 98th percentile down)
        peak = max(float(np.percentile(np.abs(column[s, 1, :size]), 98)) for s in range(len(trace)))
        level = panel.peaks[key].level(column, 1, size)
        from memviz.panels import colormaps

        assert level == colormaps.symmetric_level(np.array([peak]))
    assert panel._spins["unit"].maximum() == size - 1


def test_gru_span_is_the_running_product_of_z(make_panel, runs):
    trace = runs["gru"]
    t = len(trace) - 4
    view, panel = make_panel(SpanPanel, trace, cursor=t, layer=1)
    z = trace.array("gates")[: t + 1, 1, 1, : SIZES[1]].astype(np.float64)
    expected = np.ones((SIZES[1], t + 1))
    for s in range(t + 1):
        expected[:, s] = np.prod(z[s + 1 : t + 1], axis=0)
    np.testing.assert_allclose(panel.heatmap.data, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(panel.bars.opts["height"], expected.sum(axis=1), rtol=1e-9)
    assert panel.heatmap.plot.titleLabel.text == "working-memory span, running product of z"
    assert "update gates z" in panel.toolTip()
    panel.set_trace(runs["lstm"])  # an LSTM says f again
    assert "forget gates f" in panel.toolTip()
    assert panel.heatmap.plot.titleLabel.text == "retention: prod f from s+1 to now"
