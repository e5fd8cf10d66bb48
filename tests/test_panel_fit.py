"""Panels fit their docks: nothing cut at the right, tick labels apart, long titles elided with a
tooltip, and the distribution's rows sized to its font, in both themes, down to a small dock."""

from __future__ import annotations

import pyqtgraph as pg
import pytest
from PySide6.QtCore import QRectF
from PySide6.QtGui import QFontMetricsF

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels.distribution import DistributionPanel
from memviz.panels.registry import PANEL_CLASSES
from memviz.panels.view_model import ViewModel

NARROW = [(220, 160), (320, 240)]


@pytest.fixture(scope="module")
def traces(run_session, lstm_dir, gpt2_dir) -> dict[str, Trace]:
    return {
        "lstm": run_session(lstm_dir, generate=4).trace,
        "gpt2": run_session(gpt2_dir, generate=4).trace,
    }


@pytest.fixture
def tick_rects(monkeypatch):
    """(axis, text rectangles) of every tick label layout pyqtgraph makes."""
    found: list[tuple[pg.AxisItem, list[QRectF]]] = []
    original = pg.AxisItem.generateDrawSpecs

    def recording(axis, painter):
        specs = original(axis, painter)
        if specs is not None:
            found.append((axis, [QRectF(rect) for rect, _flags, _text in specs[2]]))
        return specs

    monkeypatch.setattr(pg.AxisItem, "generateDrawSpecs", recording)
    return found


def shown_panel(qtbot, cls, trace, theme, size):
    state = ViewState(cursor=len(trace) - 1, theme=theme)
    panel = cls(ViewModel(state))
    qtbot.addWidget(panel)
    panel.set_trace(trace)
    panel.apply_theme(state)
    panel.resize(*size)
    panel.show()
    qtbot.waitExposed(panel)
    panel.render(state)
    for _ in range(3):
        qtbot.wait(5)
    panel.grab()  # a paint: the axes lay out their ticks
    return panel


panels = [pytest.param(cls, id=cls.name) for cls in PANEL_CLASSES if cls.name not in ("memory", "match")]


@pytest.mark.parametrize("cls", panels)
@pytest.mark.parametrize("theme", ["dark", "talk"])
@pytest.mark.parametrize("size", NARROW, ids=lambda s: f"{s[0]}x{s[1]}")
def test_narrow_panel_shows_all_of_its_plots(qtbot, traces, tick_rects, cls, theme, size):
    trace = traces["gpt2" if cls.architectures == ("gpt2",) else "lstm"]
    panel = shown_panel(qtbot, cls, trace, theme, size)
    canvas = panel.canvas
    scene_rect = canvas.ci.mapRectToScene(canvas.ci.boundingRect())
    shown = canvas.mapToScene(canvas.viewport().rect()).boundingRect()
    assert scene_rect.right() <= shown.right() + 1, f"cut at the right: {scene_rect} in {shown}"
    assert scene_rect.bottom() <= shown.bottom() + 1, f"cut at the bottom: {scene_rect} in {shown}"
    for axis, rects in tick_rects:
        horizontal = axis.orientation in ("bottom", "top")
        ordered = sorted(rects, key=lambda r: r.left() if horizontal else r.top())
        for a, b in zip(ordered, ordered[1:], strict=False):
            gap = b.left() - a.right() if horizontal else b.top() - a.bottom()
            assert gap >= 0, f"{axis.orientation} tick labels run together: {a} {b}"


@pytest.mark.parametrize("theme", ["dark", "talk"])
def test_distribution_title_elides_and_rows_fit_the_font(qtbot, traces, theme):
    trace = traces["lstm"]
    panel = shown_panel(qtbot, DistributionPanel, trace, theme, (240, 200))
    label = panel.plot.titleLabel
    shown = label.item.toPlainText()
    assert shown.endswith("\u2026") and shown[:-1] in label.toolTip()
    assert label.toolTip().startswith("next token after step")
    assert (
        label.item.mapRectToScene(label.item.boundingRect()).width() <= label.sceneBoundingRect().width() + 1
    )
    row = QFontMetricsF(panel.ranks._cache.font).height()
    rows = len(panel.probs)
    assert 1 <= rows < trace.array("topk_probs").shape[1]  # fewer than all, and not none
    assert rows * row <= panel.plot.getViewBox().height() + 1
    # a taller dock shows them all, and the whole title
    panel.resize(900, 700)
    qtbot.wait(50)
    assert len(panel.probs) == trace.array("topk_probs").shape[1]
    assert label.item.toPlainText() == label.text.replace("&#x27;", "'") or not label.toolTip()
