"""The logit-lens panel on a real tiny GPT-2 traced with --logit-lens: the hover line names the layer,
the step, the next token and the layer's top-1 guess read from the trace; the figure exports to PNG
and SVG from the command line; the panel is offered (export, docks) only for traces with a lens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from memviz.cli import main
from memviz.core.trace import Trace
from memviz.panels.heatmap import show_token
from memviz.panels.logit_lens import LogitLensPanel
from memviz.panels.registry import panel_classes

TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n"


@pytest.fixture(scope="module")
def traces(tmp_path_factory, gpt2_dir_factory, lstm_dir_factory) -> dict[str, Path]:
    """Saved traces: a tiny GPT-2 with and without the lens, a tiny LSTM with it."""
    root = tmp_path_factory.mktemp("lens-panel")
    gpt2 = gpt2_dir_factory(root / "gpt2")
    lstm = lstm_dir_factory(root / "lstm")
    out = {}
    for name, model, lens in (("lens", gpt2, True), ("plain", gpt2, False), ("lstm", lstm, True)):
        path = root / f"{name}.memviz"
        args = ["trace", "--model", str(model), "--text", TEXT, "--generate", "3", "--out", str(path)]
        assert main([*args, "--logit-lens"] if lens else args) == 0
        out[name] = path
    return out


def hover(qtbot, panel, row: int, col: int) -> str:
    """Move the mouse over cell (row, col) as the window system would; the readout line then."""
    qtbot.wait(40)  # pyqtgraph's scene drops moves that come faster than its rate limit
    viewport = panel.canvas.viewport()
    at = QPointF(panel.canvas.mapFromScene(panel.heatmap.scene_pos_of(row, col)))
    event = QMouseEvent(
        QEvent.Type.MouseMove,
        at,
        QPointF(viewport.mapToGlobal(at.toPoint())),
        Qt.MouseButton.NoButton,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(viewport, event)
    QApplication.processEvents()
    return panel.readout.text


def expected_line(trace: Trace, layer: int, step: int) -> str:
    """The readout, built from the trace's columns and token labels (not from the panel)."""
    p = float(trace.array("lens_target_prob")[step, layer])
    best = int(trace.array("lens_topk_ids")[step, layer, 0])
    best_p = float(trace.array("lens_topk_probs")[step, layer, 0])
    here, following = trace.token_label(step), trace.token_label(step + 1)
    return (
        f"layer {layer}, step {step} '{show_token(here, 24)}': p(next '{show_token(following, 24)}') = "
        f"{p:.3f}; top-1 '{show_token(trace.text_of(best), 24)}' {best_p:.2f}"
    )


def test_hover_names_the_layer_step_and_tokens(qtbot, make_panel, traces):
    trace = Trace.load(traces["lens"])
    layers = trace.model["num_layers"]
    t = len(trace) - 1
    view, panel = make_panel(LogitLensPanel, trace, cursor=t, layer=1)
    assert panel.heatmap.data.shape == (layers, t + 1)
    # the cells checked: every layer at a read step, one where the top-1 guess is not the next token
    ids, target = trace.array("lens_topk_ids"), trace.token_ids
    step = next(s for s in range(1, t) if ids[s, 0, 0] != target[s + 1])
    for layer in range(layers):
        assert hover(qtbot, panel, layer, step) == expected_line(trace, layer, step)
    assert hover(qtbot, panel, layers - 1, 5) == expected_line(trace, layers - 1, 5)
    # a layer's top-1 is its most probable token; the last layer's is the model's own
    assert ids[step, -1, 0] == trace.array("topk_ids")[step, 0]
    # the last step has no next token yet: blank, and the readout says so
    assert np.isnan(panel.heatmap.data[:, t]).all()
    line = hover(qtbot, panel, 0, t)
    assert line.startswith(
        f"layer 0, step {t} '{show_token(trace.token_label(t), 24)}': next token not known yet"
    )
    # layer 0 at the top, as in the attention-distance panel
    assert panel.heatmap.scene_pos_of(0, 0).y() < panel.heatmap.scene_pos_of(layers - 1, 0).y()
    tooltip = panel.heatmap.tooltip_at(1, step)
    assert f"p(next '{show_token(trace.token_label(step + 1), 24)}')" in tooltip
    assert tooltip.count("top-") == 3


def test_cursor_column_and_click(qtbot, make_panel, traces):
    trace = Trace.load(traces["lens"])
    view, panel = make_panel(LogitLensPanel, trace, cursor=6, layer=2)
    np.testing.assert_array_equal(panel.heatmap.data, trace.array("lens_target_prob")[:7].T)
    assert panel.heatmap.cursor_col == 6 and panel.heatmap.cursor_line.isVisible()
    assert panel.heatmap.row_box.rect().topLeft() == QPointF(6, 2)
    qtbot.mouseClick(
        panel.canvas.viewport(),
        Qt.MouseButton.LeftButton,
        pos=panel.canvas.mapFromScene(panel.heatmap.scene_pos_of(1, 3)),
    )
    assert (view.state.cursor, view.state.layer) == (3, 1)
    assert panel.heatmap.data.shape[1] == 4


@pytest.mark.parametrize("theme", ["dark", "talk"])
def test_exports_png_and_svg(traces, tmp_path, theme):
    from PIL import Image

    png, svg = tmp_path / "lens.png", tmp_path / "lens.svg"
    common = ["export", "--trace", str(traces["lens"]), "--panel", "logit-lens", "--theme", theme]
    assert main([*common, "--out", str(png)]) == 0
    assert main([*common, "--format", "svg", "--out", str(svg)]) == 0
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 200 and pixels.shape[1] > 300
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # cells in several colours, text
    text = svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith(("<?xml", "<svg")) and "</svg>" in text
    assert "Logit lens" in text  # the figure's title


def test_offered_only_for_lens_traces(traces, capsys, tmp_path):
    lens, plain, lstm = (Trace.load(traces[k]) for k in ("lens", "plain", "lstm"))
    assert LogitLensPanel in panel_classes()
    assert LogitLensPanel.supports(lens) and LogitLensPanel.supports(lstm)
    assert not LogitLensPanel.supports(plain)
    listed = {}
    for name in ("lens", "plain"):
        assert main(["export", "--trace", str(traces[name]), "--list-panels"]) == 0
        listed[name] = capsys.readouterr().out.split()
    assert "logit-lens" in listed["lens"] and "logit-lens" not in listed["plain"]
    assert (
        main(
            [
                "export",
                "--trace",
                str(traces["plain"]),
                "--panel",
                "logit-lens",
                "--out",
                str(tmp_path / "x.png"),
            ]
        )
        != 0
    )
    assert not (tmp_path / "x.png").exists()


def test_lstm_lens_trace_draws(qtbot, make_panel, traces):
    trace = Trace.load(traces["lstm"])
    _, panel = make_panel(LogitLensPanel, trace, cursor=len(trace) - 2)
    np.testing.assert_array_equal(panel.heatmap.data, trace.array("lens_target_prob")[: len(trace) - 1].T)


def test_the_window_docks_it_for_a_lens_trace(qtbot, make_window, traces):
    window = make_window()
    window.open_trace(traces["plain"])
    window.redraw()
    assert "logit-lens" not in window.docks
    window.open_trace(traces["lens"])
    window.redraw()
    assert "logit-lens" in window.docks
    panel = window.docks["logit-lens"].widget()
    assert isinstance(panel, LogitLensPanel)
    t = window.view.state.cursor
    np.testing.assert_array_equal(
        panel.heatmap.data, Trace.load(traces["lens"]).array("lens_target_prob")[: t + 1].T
    )
