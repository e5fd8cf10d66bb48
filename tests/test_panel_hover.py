"""Hovering, clicking and reading the panels (issue 13, items 6 and 8): the value under the mouse
with its tokens, token labels on long axes, a selection box seen on every colour, unit rows sorted
and zoomed (a click selects the unit drawn in the row clicked), and the token strip's legend and
word wrapping. Real tiny models, real widgets."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, Qt
from PySide6.QtGui import QColor, QFontMetrics, QHelpEvent
from PySide6.QtWidgets import QApplication, QToolTip

from memviz.core.view import THEMES, ViewState
from memviz.panels import colormaps
from memviz.panels.attention import AttentionPanel
from memviz.panels.head_grid import HeadGridPanel
from memviz.panels.heatmap import show_token
from memviz.panels.lstm_gates import GatesPanel
from memviz.panels.lstm_span import SpanPanel
from memviz.panels.lstm_state import StatePanel
from memviz.panels.outline import ContrastOutline
from memviz.panels.token_axis import LABEL_CHARS
from memviz.panels.view_model import ViewModel

LONG = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n" * 3


@pytest.fixture(scope="module")
def gpt2_trace(run_session, gpt2_dir):
    trace = run_session(gpt2_dir, LONG).trace
    assert len(trace) > 40  # a long map: beyond the ~20 tokens that had token labels before
    return trace


@pytest.fixture(scope="module")
def lstm_backend(lstm_dir_factory, tmp_path_factory):
    from memviz.backends.registry import load_backend

    return load_backend(
        str(lstm_dir_factory(tmp_path_factory.mktemp("lstm64") / "lstm", layers=2, hidden=64))
    )


@pytest.fixture(scope="module")
def lstm_trace(run_session, lstm_backend):
    return run_session(lstm_backend, LONG).trace


def move(qtbot, panel, scene_pos) -> None:
    """A mouse move over the canvas, sent to its viewport as the window system would."""
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QMouseEvent

    qtbot.wait(40)  # pyqtgraph's scene drops moves that come faster than its rate limit
    viewport = panel.canvas.viewport()
    at = QPointF(panel.canvas.mapFromScene(scene_pos))
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


def click(qtbot, panel, scene_pos) -> None:
    qtbot.mouseClick(
        panel.canvas.viewport(), Qt.MouseButton.LeftButton, pos=panel.canvas.mapFromScene(scene_pos)
    )


def rest_tooltip(panel, scene_pos) -> str:
    """What Qt shows when the mouse rests there (the ToolTip event the canvas gets)."""
    QToolTip.hideText()
    viewport = panel.canvas.viewport()
    local = panel.canvas.mapFromScene(scene_pos)
    event = QHelpEvent(QEvent.Type.ToolTip, local, viewport.mapToGlobal(local))
    QApplication.sendEvent(viewport, event)
    return QToolTip.text()


def quoted(tokens, i: int) -> str:
    return f"{i} '{show_token(tokens[i], 24)}'"


# -- item 6: the value under the mouse, and tokens on the axes -------------------------------------
def test_attention_hover_names_query_key_and_weight(qtbot, make_panel, gpt2_trace):
    trace = gpt2_trace
    t = len(trace) - 1
    view, panel = make_panel(AttentionPanel, trace, cursor=t, layer=1, head=2)
    dense = trace.attention_tensor()
    tokens = trace.token_text
    for row, col in ((t - 3, 12), (30, 29), (t, 0)):
        pos = panel.heatmap.scene_pos_of(row, col)
        move(qtbot, panel, pos)
        expected = f"query {quoted(tokens, row)} \u2192 key {quoted(tokens, col)}: {float(dense[1, 2, row, col]):.3f}"
        assert panel.readout.text == expected
        assert panel.readout.label.text() == expected
        # resting there shows the value, not the panel's fixed explanation
        shown = rest_tooltip(panel, pos)
        assert shown == panel.heatmap.tooltip_at(row, col) != panel.toolTip()
        assert f"{float(dense[1, 2, row, col]):.6f}" in shown
    move(qtbot, panel, panel.heatmap.plot.getAxis("bottom").sceneBoundingRect().center())
    assert panel.readout.text == ""  # nothing hovered: the readout says so


def labels_do_not_overlap(axis, horizontal: bool) -> None:
    metrics = QFontMetrics(axis.style["tickFont"])
    lo, hi = sorted(axis.range)
    per_cell = (axis.width() if horizontal else axis.height()) / (hi - lo)
    texts = [show_token(axis.tokens[i], LABEL_CHARS) for i in axis.shown]
    pairs = list(zip(axis.shown, texts, strict=True))
    for (a, ta), (b, tb) in zip(pairs, pairs[1:], strict=False):
        room = (b - a) * per_cell
        need = (
            (metrics.horizontalAdvance(ta) + metrics.horizontalAdvance(tb)) / 2
            if horizontal
            else metrics.height()
        )
        assert room >= need, (a, b, room, need)


@pytest.mark.parametrize("size", [(900, 560), (420, 360)])
def test_long_attention_axes_show_tokens_where_they_fit(qtbot, make_panel, gpt2_trace, size):
    trace = gpt2_trace
    view, panel = make_panel(AttentionPanel, trace, cursor=len(trace) - 1, layer=0, head=0)
    panel.resize(*size)
    for _ in range(3):
        QApplication.processEvents()
        panel.grab()
    for side, horizontal in (("bottom", True), ("left", False)):
        axis = panel.heatmap.plot.getAxis(side)
        assert axis.step >= 1 and len(axis.shown) >= 3
        assert all(i % axis.step == 0 for i in axis.shown)
        values = [i + 0.5 for i in axis.shown]
        assert axis.tickStrings(values, 1, 1) == [
            show_token(trace.token_text[i], LABEL_CHARS) for i in axis.shown
        ]
        labels_do_not_overlap(axis, horizontal)


def test_gates_and_state_hover_give_unit_step_token_value(qtbot, make_panel, lstm_trace):
    trace = lstm_trace
    t = len(trace) - 1
    tokens = trace.token_text
    view, panel = make_panel(GatesPanel, trace, cursor=t, layer=1, unit=3)
    gates = trace.array("gates")
    move(qtbot, panel, panel.heatmaps[1].scene_pos_of(17, 33))
    assert (
        panel.readout.text
        == f"f: unit 17, step {33} '{show_token(tokens[33], 24)}': {float(gates[33, 1, 1, 17]):.3f}"
    )
    assert rest_tooltip(panel, panel.heatmaps[1].scene_pos_of(17, 33)) == panel.heatmaps[1].tooltip_at(17, 33)
    view, panel = make_panel(StatePanel, trace, cursor=t, layer=0, unit=3)
    cell = trace.array("cell")
    move(qtbot, panel, panel.heatmaps["cell"].scene_pos_of(40, 20))
    assert (
        panel.readout.text
        == f"c: unit 40, step 20 '{show_token(tokens[20], 24)}': {float(cell[20, 0, 40]):.3f}"
    )


def test_head_grid_hover_gives_layer_head_key_and_weight(qtbot, make_panel, gpt2_trace):
    trace = gpt2_trace
    t = len(trace) - 1
    view, panel = make_panel(HeadGridPanel, trace, cursor=t)
    row = trace.attention_tensor()[2, 1, t, : t + 1]
    vb = panel.plot.vb
    for fraction in (0.1, 0.5, 0.93):
        x = 1 + (panel.margin[0] + fraction * panel.bins) / panel.cell_size[0]
        pos = vb.mapViewToScene(type(panel.scene_pos_of(0, 0))(x, 2.5))
        pos = panel.canvas.mapToScene(panel.canvas.mapFromScene(pos))  # where a mouse can be: a whole pixel
        move(qtbot, panel, pos)
        layer, head, keys = panel.keys_at(pos)
        assert (layer, head) == (2, 1)
        key = keys.start + int(np.argmax(row[keys.start : keys.stop]))
        assert panel.readout.text.startswith("layer 2, head 1: ")
        assert panel.readout.text.endswith(f"{float(row[key]):.3f}") and f"{key} '" in panel.readout.text
        # the column drawn there is the max over those keys (the bar's height comes from it)
        assert float(row[keys.start : keys.stop].max()) == float(row[key])


# -- item 8: the selection box on every colour -----------------------------------------------------
def luminance(colour: QColor) -> float:
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(colour.redF()) + 0.7152 * linear(colour.greenF()) + 0.0722 * linear(colour.blueF())


def contrast(a: QColor, b: QColor) -> float:
    la, lb = sorted((luminance(a), luminance(b)))
    return (lb + 0.05) / (la + 0.05)


@pytest.mark.parametrize("theme", sorted(THEMES))
def test_the_selection_box_contrasts_with_every_colour_of_every_colormap(theme):
    outline = ContrastOutline()
    pen = outline.pen()
    pen.setColor(QColor(THEMES[theme].accent))
    outline.setPen(pen)
    lines = outline.colours()
    assert QColor(THEMES[theme].accent) in lines
    for name in (colormaps.SEQUENTIAL, colormaps.DIVERGING, "inferno"):
        for r, g, b, _ in colormaps.lookup_table(name):
            cell = QColor(int(r), int(g), int(b))
            assert max(contrast(cell, line) for line in lines) >= 4.5, (name, cell.name())
    # the accent alone (the box before) vanished on some cells: the test can fail
    worst = min(
        contrast(QColor(*map(int, rgba[:3])), QColor(THEMES[theme].accent))
        for name in (colormaps.SEQUENTIAL, colormaps.DIVERGING, "inferno")
        for rgba in colormaps.lookup_table(name)
    )
    assert worst < 1.5


@pytest.mark.parametrize("theme", sorted(THEMES))
def test_the_drawn_box_shows_on_yellow_cells(qtbot, make_panel, lstm_trace, theme):
    """Pixels: on a gates heatmap whose cells are all viridis' yellow end, the drawn box has pixels
    that contrast with the cell colour (the accent box alone did not)."""
    from memviz.core.trace import Trace

    arrays = {k: v.copy() for k, v in lstm_trace.to_arrays().items()}
    arrays["gates"][...] = 1.0
    trace = Trace.from_arrays(arrays)
    view, panel = make_panel(GatesPanel, trace, cursor=len(trace) - 1, unit=20, theme=theme)
    panel.apply_theme(view.state)
    heatmap = panel.heatmaps[0]
    image = panel.canvas.grab().toImage()
    yellow = QColor(*map(int, colormaps.lookup_table(colormaps.SEQUENTIAL)[-1][:3]))
    box = heatmap.row_box.mapRectToScene(heatmap.row_box.rect())
    top = panel.canvas.mapFromScene(box.topLeft())
    middle_x = panel.canvas.mapFromScene(box.center()).x()
    column = [QColor(image.pixel(middle_x, y)) for y in range(top.y() - 6, top.y() + 3)]
    assert max(contrast(c, yellow) for c in column) >= 4.5


# -- item 8: units sorted and zoomed -----------------------------------------------------------------
@pytest.mark.parametrize(
    "cls,sort", [(StatePanel, "variance of c"), (GatesPanel, "f now"), (SpanPanel, "memory length")]
)
def test_a_click_selects_the_unit_drawn_in_that_row_under_sort_and_zoom(
    qtbot, make_panel, lstm_trace, cls, sort
):
    trace = lstm_trace
    t = len(trace) - 1
    view, panel = make_panel(cls, trace, cursor=t, layer=1, unit=3)
    heatmap = (
        panel.heatmaps["cell"]
        if cls is StatePanel
        else panel.heatmaps[0]
        if cls is GatesPanel
        else panel.heatmap
    )
    units = 64
    assert np.array_equal(panel.units.order, np.arange(units))  # unit number by default
    panel.units.set_sort(sort)
    # the order, computed here independently: ascending, so the largest is on top
    if cls is StatePanel:
        key = trace.array("cell")[: t + 1, 1].astype(np.float64).var(axis=0)
        source = trace.array("cell")[: t + 1, 1].T
    elif cls is GatesPanel:
        key = trace.array("gates")[t, 1, 1].astype(np.float64)
        source = trace.array("gates")[: t + 1, 1, 0].T
    else:
        key, source = panel.span, panel.retention
    order = np.argsort(key, kind="stable")
    np.testing.assert_array_equal(panel.units.order, order)
    np.testing.assert_array_equal(heatmap.data, source[order])  # row r draws unit order[r]
    assert heatmap.highlight_row == int(np.flatnonzero(order == 3)[0])  # the selected unit, in its row
    panel.units.zoom_to(20, 36)
    panel.render(view.state)
    for _ in range(2):
        QApplication.processEvents()
        panel.grab()
    assert heatmap.plot.getViewBox().viewRange()[1] == [20, 36]
    axis = heatmap.plot.getAxis("left")
    assert axis.tickStrings([r + 0.5 for r in axis.shown], 1, 1) == [str(order[r]) for r in axis.shown]
    for row in (21, 28, 35):
        click(qtbot, panel, heatmap.scene_pos_of(row, t // 2))
        assert view.state.unit == order[row]
        assert heatmap.highlight_row == row
    view.update(unit=int(order[2]))  # a unit outside the zoom: the view goes to it
    y0, y1 = heatmap.plot.getViewBox().viewRange()[1]
    assert y0 <= 2.5 <= y1 and round(y1 - y0) == 16


def test_the_wheel_zooms_the_units_and_the_steps_keep_following(qtbot, make_panel, lstm_trace):
    trace = lstm_trace
    view, panel = make_panel(StatePanel, trace, cursor=20, layer=0)
    heatmap = panel.heatmaps["cell"]
    vb = heatmap.plot.getViewBox()
    x_before = vb.viewRange()[0]
    viewport = panel.canvas.viewport()
    at = panel.canvas.mapFromScene(heatmap.scene_pos_of(32, 10))
    qtbot.wait(10)
    from PySide6.QtGui import QWheelEvent

    event = QWheelEvent(
        at,
        viewport.mapToGlobal(at),
        QPoint(0, 0),
        QPoint(0, 240),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(viewport, event)
    y0, y1 = vb.viewRange()[1]
    assert y1 - y0 < 64 and y0 <= 32.5 <= y1  # the units zoomed about the mouse
    assert vb.viewRange()[0] == x_before  # not the steps
    assert panel.units.zoom == (y0, y1)
    other = panel.heatmaps["hidden"].plot.getViewBox().viewRange()[1]
    assert other == [y0, y1]  # both heatmaps show the same units
    for cursor in range(21, len(trace)):
        view.update(cursor=cursor)
    assert heatmap.following and vb.viewRange()[0][1] >= len(trace)  # the steps still follow the run
    assert vb.viewRange()[1] == [y0, y1]


# -- item 8: the token strip ---------------------------------------------------------------------------
def strip_view(qtbot, trace, **state):
    from memviz.ui.token_strip import TokenStripView

    view = ViewModel(ViewState(**state))
    widget = TokenStripView(view)
    qtbot.addWidget(widget)
    widget.strip.set_trace(trace)
    widget.resize(420, 300)
    widget.show()
    qtbot.waitExposed(widget)
    widget.render(view.state)
    QApplication.processEvents()
    return widget


@pytest.mark.parametrize("signal", ["unit", "cell", "attention", "memory", "none"])
def test_the_token_strip_legend_names_its_tint_and_scale(qtbot, lstm_trace, gpt2_trace, signal):
    from memviz.ui.token_strip import SIGNALS

    trace = gpt2_trace if signal == "attention" else lstm_trace
    t = len(trace) - 2
    widget = strip_view(qtbot, trace, signal=signal, cursor=t, layer=1, unit=7, head=2)
    legend = widget.legend
    assert legend.isVisible() and legend.geometry().bottom() <= widget.height()
    assert SIGNALS[signal][0] in legend.label
    if signal == "unit":
        assert legend.scale == (-1.0, 1.0)
    elif signal == "cell":
        top = float(np.abs(trace.array("cell")[:, 1, 7]).max())
        assert legend.scale == pytest.approx((-top, top))
        # the bar's end colours are the tints of the strongest tokens
        strongest = int(np.argmax(np.abs(trace.array("cell")[:, 1, 7])))
        end = legend.ends()[1] if trace.array("cell")[strongest, 1, 7] > 0 else legend.ends()[0]
        assert widget.strip._tint(end) == widget.strip.token_color(strongest)
    elif signal == "attention":
        assert legend.scale == (0.0, 1.0) and "square root" in legend.label
    else:
        assert legend.scale is None  # nothing tints (a run without memory scores has none either)
    image = widget.grab()
    assert not image.isNull()


def test_the_character_strip_wraps_at_word_boundaries(qtbot, lstm_trace, lstm_backend):
    from memviz.ui.token_strip import wrap_before

    trace = lstm_trace
    widget = strip_view(qtbot, trace, signal="none", cursor=0)
    strip = widget.strip
    texts = trace.token_text
    assert all(len(t) == 1 for t in texts)  # a character-level model
    rects = [strip.token_rect(i) for i in range(len(texts))]
    right = strip.width() - strip.MARGIN
    breaks = 0
    for i in range(1, len(texts)):
        if rects[i].top() != rects[i - 1].top() and not texts[i - 1].endswith("\n"):
            breaks += 1
            assert texts[i - 1].isspace() or texts[i].isspace(), (i, texts[i - 1 : i + 1])
    assert breaks >= 3
    assert all(r.right() <= right for r in rects)
    # incremental layout (a live run: tokens arrive one by one) equals laying out the whole text
    from memviz.core.sampling import SamplingConfig
    from memviz.core.session import Session

    session = Session(lstm_backend, sampling=SamplingConfig(temperature=0.0))
    session.feed(LONG)
    live = strip_view(qtbot, session.trace, signal="none", cursor=0)
    while session.step() is not None:
        live.render(ViewState(signal="none", cursor=len(session.trace) - 1))
    assert len(session.trace) == len(texts)
    assert [live.strip.token_rect(i) for i in range(len(texts))] == rects
    assert wrap_before(list("ab cd"), 0, 4) == 3 and wrap_before(list("abcd"), 0, 3) == 3
