"""Helpers the tests share that are classes rather than fixtures' values (not a test module: pytest
collects nothing here). Test modules reach them through conftest's fixtures (tiny_panel_class)."""

from __future__ import annotations

import numpy as np

from memviz.panels.base import Panel


class TinyPanel(Panel):
    """A test-only panel: a pyqtgraph plot of the top-1 probability, so the engine is tested on its own."""

    name = "tiny"
    title = "Tiny"

    def __init__(self, view, parent=None):
        import pyqtgraph as pg
        from PySide6.QtWidgets import QVBoxLayout

        super().__init__(view, parent)
        layout = QVBoxLayout(self)
        self.canvas = pg.GraphicsLayoutWidget()
        layout.addWidget(self.canvas)
        self.plot = self.canvas.addPlot(title="top-1 probability")
        self.plot.setLabel("bottom", "step")
        self.curve = self.plot.plot([], [])

    def apply_theme(self, state):
        self.canvas.setBackground(state.theme_obj.panel_background)

    def render(self, state):
        probs = self.trace.array("topk_probs")[: state.cursor + 1, 0]
        self.curve.setData(np.arange(len(probs)), probs)
