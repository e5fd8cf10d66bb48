"""A classifier's per-step prediction: what it would answer if the text ended at each step.

One line per label over the steps (the trace's `prediction` column, [T, C]: a sigmoid's probability
for one label, a softmax over several), the cursor marked, and the answer at the cursor in the title.
A sentiment model's line rises and falls as it reads.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels.heatmap import GraphicsPanel, clamp, pixmap_axes, show_token, style_plot
from memviz.panels.token_axis import LabelledTokenAxis
from memviz.panels.token_labels import live_labels
from memviz.panels.view_model import ViewModel

COLOURS = ("#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7")


def labels_of(trace: Trace) -> list[str]:
    labels = trace.model.get("labels") or []
    width = trace.array("prediction").shape[1] if trace.has("prediction") else len(labels)
    return [str(x) for x in labels[:width]] + [f"class {i}" for i in range(len(labels), width)]


class PredictionPanel(GraphicsPanel):
    name = "prediction"
    title = "Prediction per step"
    architectures = ()  # any recurrent cell: what matters is a classifier head (see supports)

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.finish_controls()
        self.axis = LabelledTokenAxis("bottom")
        self.plot: pg.PlotItem = self.canvas.ci.addPlot(row=0, col=0, axisItems=pixmap_axes(bottom=self.axis))
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "probability")
        self.plot.setYRange(0.0, 1.0, padding=0.02)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.legend = self.plot.addLegend(offset=(8, 4))
        self.cursor_line = pg.InfiniteLine(angle=90, movable=False)
        self.plot.addItem(self.cursor_line, ignoreBounds=True)
        self.curves: list[pg.PlotDataItem] = []
        self.step = -1
        self.values = np.zeros((0, 0), dtype=np.float32)  # what is drawn: [steps, labels]
        self.apply_theme(view.state)

    @classmethod
    def supports(cls, trace: Trace) -> bool:
        return trace.has("prediction") or trace.model.get("head") == "classifier"

    def set_trace(self, trace: Trace | None) -> None:
        super().set_trace(trace)
        self.axis.set_tokens(live_labels(trace))
        for curve in self.curves:
            self.plot.removeItem(curve)
        self.legend.clear()
        self.curves = []
        self.step = -1
        self.values = np.zeros((0, 0), dtype=np.float32)

    def _ensure_curves(self, labels: list[str]) -> None:
        if len(self.curves) == len(labels):
            return
        for curve in self.curves:
            self.plot.removeItem(curve)
        self.legend.clear()
        self.curves = [
            self.plot.plot(name=label, pen=pg.mkPen(COLOURS[i % len(COLOURS)], width=1.8))
            for i, label in enumerate(labels)
        ]

    def render(self, state: ViewState) -> None:
        trace = self.trace
        if trace is None or len(trace) == 0 or state.cursor < 0 or not trace.has("prediction"):
            return
        prediction = trace.array("prediction")  # [T, C]
        labels = labels_of(trace)
        self._ensure_curves(labels)
        t = clamp(state.cursor, len(trace))
        self.step = t
        self.values = prediction
        x = np.arange(len(prediction)) + 0.5
        for k, curve in enumerate(self.curves):
            curve.setData(x, prediction[:, k])
        self.plot.setXRange(0, max(1, len(prediction)), padding=0)
        self.cursor_line.setValue(t + 0.5)
        best = int(np.argmax(prediction[t])) if prediction.shape[1] > 1 else 0
        token = show_token(trace.token_label(t), 24)
        answer = f"{labels[best]} {prediction[t, best]:.3f}"
        self.plot.setTitle(f"after step {t} '{token}': {answer}")

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        theme = state.theme_obj
        style_plot(self.plot, theme)
        self.cursor_line.setPen(pg.mkPen(theme.accent, width=1.5))
