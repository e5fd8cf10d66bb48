"""The figure of `memviz compare`: log p of each next token in A and B over the steps (top), and the
difference B - A as bars (bottom: above zero, B expected the token more), token labels where they fit.

Drawn by the export renderer like any panel (FigureRenderer), so it follows the themes ("talk" for
slides by default) and writes SVG, PDF or PNG the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from memviz.core.view import ViewState
from memviz.panels.heatmap import GraphicsPanel, pixmap_axes, style_plot
from memviz.panels.token_axis import LabelledTokenAxis
from memviz.panels.view_model import ViewModel

COLOUR_A, COLOUR_B = "#4e79a7", "#e15759"
UP, DOWN = "#59a14f", "#e15759"  # B more (less) sure of the actual next token than A


class CompareFigure(GraphicsPanel):
    name = "compare"
    title = "log p of the next token"

    def __init__(self, view: ViewModel, comparison: Any, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.comparison = comparison  # a memviz.export.compare.Comparison (not imported: no cycle)
        self.finish_controls()
        c = comparison
        n = c.steps
        labels = [c.a.token_label(t) for t in range(n)]
        self.top_axis = LabelledTokenAxis("bottom")
        self.bottom_axis = LabelledTokenAxis("bottom")
        for axis in (self.top_axis, self.bottom_axis):
            axis.set_tokens(labels)
        self.plot = self.canvas.ci.addPlot(row=0, col=0, axisItems=pixmap_axes(bottom=self.top_axis))
        self.diff_plot = self.canvas.ci.addPlot(row=1, col=0, axisItems=pixmap_axes(bottom=self.bottom_axis))
        self.canvas.ci.layout.setRowStretchFactor(0, 3)
        self.canvas.ci.layout.setRowStretchFactor(1, 2)
        names = c.names
        for plot in (self.plot, self.diff_plot):
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.getAxis("left").enableAutoSIPrefix(False)
            plot.setXRange(0, max(1, n), padding=0)
        self.diff_plot.setXLink(self.plot)
        self.plot.setLabel("left", "log p (nats)")
        self.diff_plot.setLabel("left", f"{names[1]} \u2212 {names[0]}")
        self.diff_plot.setLabel("bottom", "token (its next token's log p)")
        self.legend = self.plot.addLegend(offset=(8, 4))
        x = np.arange(n) + 0.5
        self.plot.plot(x, c.logp_a, name=names[0], pen=pg.mkPen(COLOUR_A, width=2.0), connect="finite")
        self.plot.plot(x, c.logp_b, name=names[1], pen=pg.mkPen(COLOUR_B, width=2.0), connect="finite")
        diff = np.nan_to_num(c.diff, nan=0.0)
        brushes = [pg.mkBrush(UP if d >= 0 else DOWN) for d in diff]
        self.bars = pg.BarGraphItem(x=x, height=diff, width=0.8, brushes=brushes, pen=pg.mkPen(None))
        self.diff_plot.addItem(self.bars)
        self.zero = pg.InfiniteLine(pos=0, angle=0, movable=False)
        self.diff_plot.addItem(self.zero, ignoreBounds=True)
        self.apply_theme(view.state)

    @classmethod
    def supports(cls, trace) -> bool:
        return False  # drawn by `memviz compare` only: it shows two traces

    def render(self, state: ViewState) -> None:
        pass  # everything is drawn once, at construction

    def figure_title(self, state: ViewState) -> str:
        c = self.comparison
        names = c.names
        known = ~np.isnan(c.diff)
        mean = float(np.mean(c.diff[known])) if known.any() else float("nan")
        return (
            f"{names[1]} vs {names[0]}: mean log p {mean:+.3f} nats, "
            f"top-1 changed at {int(c.top1_changed.sum())} of {c.steps} steps"
        )

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        theme = state.theme_obj
        for plot in (self.plot, self.diff_plot):
            style_plot(plot, theme)
            plot.getAxis("left").setWidth(6 * theme.font_size)  # the two plots' steps line up
        self.legend.setLabelTextColor(theme.foreground)
        self.legend.setLabelTextSize(f"{theme.font_size}pt")
        for _sample, label in self.legend.items:
            label.setText(label.text, color=theme.foreground, size=f"{theme.font_size}pt")
        self.zero.setPen(pg.mkPen(theme.foreground, width=1))
