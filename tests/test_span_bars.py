"""The span panel's memory-length bars with many units in a narrow dock: bars of 0.8 units drawn
under a pixel wide alias, and whole runs of units vanished (256 units in 250 pixels showed two
gaps of 15-20 units). Every unit's bar must be on screen."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF

from memviz.core.trace import KEPT_CANDIDATES, StepRecord, Trace
from memviz.core.view import ViewState
from memviz.panels.lstm_span import SpanPanel
from memviz.panels.view_model import ViewModel

UNITS = 256


def trace_of(steps: int) -> Trace:
    trace = Trace(
        {
            "name": "lstm-1x256",
            "source": "synthetic",
            "architecture": "lstm",
            "kind": "recurrent",
            "num_layers": 1,
            "hidden_size": UNITS,
            "num_heads": 0,
            "vocab_size": 7,
            "context_size": None,
        }
    )
    rng = np.random.default_rng(0)
    for t in range(steps):
        gates = rng.random((1, 4, UNITS), dtype=np.float32)
        cell = rng.standard_normal((1, UNITS), dtype=np.float32)
        internals = {"gates": gates, "cell": cell, "hidden": np.tanh(cell) * gates[:, 3]}
        ids, probs = np.arange(KEPT_CANDIDATES), np.full(KEPT_CANDIDATES, 0.05, np.float32)
        trace.append(StepRecord(t % 7, "ab"[t % 2], False, ids, probs, internals))
    return trace


def test_every_units_bar_shows_in_a_narrow_dock(qtbot):
    trace = trace_of(300)
    view = ViewModel(ViewState(cursor=len(trace) - 1))
    panel = SpanPanel(view)
    qtbot.addWidget(panel)
    panel.set_trace(trace)
    panel.resize(330, 400)
    panel.show()
    qtbot.waitExposed(panel)
    panel.render(view.state)
    for _ in range(2):
        panel.grab()
    assert panel.span.min() >= 1.0  # the step itself: every bar is at least 1 step high
    canvas = panel.canvas
    image = canvas.viewport().grab().toImage()
    vb = panel.plot.vb
    left = canvas.mapFromScene(vb.mapViewToScene(QPointF(0, 0.5)))
    right = canvas.mapFromScene(vb.mapViewToScene(QPointF(UNITS - 1, 0.5)))
    assert right.x() - left.x() < 2 * UNITS  # narrow: fewer than two pixels a unit
    top, ceiling = panel.span.max(), vb.viewRange()[1][1]  # above every bar, inside the plot
    above = canvas.mapFromScene(vb.mapViewToScene(QPointF(UNITS / 2, (top + ceiling) / 2)))
    background = image.pixelColor(above)
    y = left.y()
    empty = [x for x in range(left.x() + 1, right.x()) if image.pixelColor(x, y) == background]
    assert not empty, f"{len(empty)} pixel columns without a bar, first at x = {empty[:5]}"
