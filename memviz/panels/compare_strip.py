"""Compare with baseline: log p of each next token in the run before an intervention (A) and now (B).

Shown when the trace carries a `baseline` (Trace's optional companion run: an intervention's
baseline, Run -> Intervene..., or a saved run picked with File -> Compare with...) over the same
tokens: the run now may still be reading them, so the steps compared are those both runs have
read, from the start. Top: log p of the token that came next, A and B, one line
each; bottom: B - A as bars (below zero, blue: the intervention made the next token less likely;
above, red: more likely), coloured as the diff strip and the B - A views. The cursor is marked on
both.

The numbers are the traces' own `target_logprob` (as `memviz compare` reads them, export/compare.py);
the panel sits below export, so it reads the two columns itself and the tests check it against
`compare_traces`.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels.heatmap import GraphicsPanel, clamp, pixmap_axes, show_token, style_plot
from memviz.panels.token_axis import LabelledTokenAxis
from memviz.panels.token_labels import live_labels
from memviz.panels.view_model import ViewModel

COLOUR_A, COLOUR_B = "#9aa5b1", "#4e79a7"  # the baseline grey, the intervened run blue
# bars: B more sure of the next token (red), or less (blue): the diverging map's ends, as the diff
# strip and every B - A view colour them (colormaps.DIVERGING: positive red, negative blue)
UP, DOWN = "#d6604d", "#4393c3"
KEY = "target_logprob"


def shared_steps(trace: Trace | None) -> int:
    """Steps from the start where `trace` and its baseline read the same tokens (0 without one)."""
    baseline = getattr(trace, "baseline", None)
    if trace is None or baseline is None:
        return 0
    n = min(len(trace), len(baseline))
    a, b = baseline.token_ids, trace.token_ids
    return next((t for t in range(n) if a[t] != b[t]), n)


def logprobs(trace: Trace, n: int) -> np.ndarray:
    """log p of the next token at steps 0..n-1 (NaN where not known: a live run's last step)."""
    if n == 0 or not trace.has(KEY):
        return np.full(n, np.nan)
    return trace.array(KEY)[:n].astype(np.float64)


class CompareStripPanel(GraphicsPanel):
    name = "compare"
    title = "Compare with baseline"
    architectures = ()  # any language model run with a baseline (see supports)

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.finish_controls()
        self.setToolTip(
            "The run before the intervention (A, grey) and now (B, blue): log p of the token that actually "
            "came next at each step; bars: B - A (below zero: the intervention made it less likely)."
        )
        self.axis = LabelledTokenAxis("bottom")
        self.lines: pg.PlotItem = self.canvas.ci.addPlot(row=0, col=0, axisItems=pixmap_axes())
        self.lines.hideAxis("bottom")  # the steps are read on the bars' axis below (x linked)
        self.plot: pg.PlotItem = self.canvas.ci.addPlot(row=1, col=0, axisItems=pixmap_axes(bottom=self.axis))
        for plot in (self.lines, self.plot):
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.setXLink(self.lines)
        self.lines.setLabel("left", "log p(next)")
        self.plot.setLabel("left", "B - A")
        self.plot.setLabel("bottom", "step")
        self.legend = self.lines.addLegend(offset=(8, 4))
        self.curve_a = self.lines.plot(name="A baseline", pen=pg.mkPen(COLOUR_A, width=1.8))
        self.curve_b = self.lines.plot(name="B now", pen=pg.mkPen(COLOUR_B, width=1.8))
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8)
        self.plot.addItem(self.bars)
        self.zero = pg.InfiniteLine(pos=0.0, angle=0, movable=False)
        self.plot.addItem(self.zero, ignoreBounds=True)
        self.cursor_lines = [pg.InfiniteLine(angle=90, movable=False) for _ in range(2)]
        for plot, line in zip((self.lines, self.plot), self.cursor_lines, strict=True):
            plot.addItem(line, ignoreBounds=True)
        self.step = -1
        empty = np.zeros(0)
        self.logp_a, self.logp_b, self.diff = empty, empty, empty  # what is drawn, per compared step
        self.apply_theme(view.state)

    @classmethod
    def supports(cls, trace: Trace) -> bool:
        baseline = getattr(trace, "baseline", None)
        if baseline is None or not baseline.has(KEY):
            return False
        return shared_steps(trace) == len(trace)  # the run now reads the baseline's tokens (so far)

    def set_trace(self, trace: Trace | None) -> None:
        super().set_trace(trace)
        self.axis.set_tokens(live_labels(trace))
        self.step = -1
        empty = np.zeros(0)
        self.logp_a, self.logp_b, self.diff = empty, empty, empty
        self.curve_a.setData([], [])
        self.curve_b.setData([], [])
        self.bars.setOpts(x=[], height=[])

    def render(self, state: ViewState) -> None:
        trace = self.trace
        n = shared_steps(trace)
        if trace is None or n == 0 or state.cursor < 0:
            return
        self.logp_a, self.logp_b = logprobs(trace.baseline, n), logprobs(trace, n)
        self.diff = self.logp_b - self.logp_a
        x = np.arange(n, dtype=np.float64)
        self.curve_a.setData(x, self.logp_a, connect="finite")
        self.curve_b.setData(x, self.logp_b, connect="finite")
        heights = np.nan_to_num(self.diff, nan=0.0)
        self.bars.setOpts(
            x=x, height=heights, width=0.8, brushes=[pg.mkBrush(UP if h >= 0 else DOWN) for h in heights]
        )
        self.plot.setXRange(-0.5, max(n, 1) - 0.5, padding=0)
        t = clamp(state.cursor, n)
        self.step = t
        for line in self.cursor_lines:
            line.setValue(t)
        d = self.diff[t]
        change = "next token not known yet" if math.isnan(d) else f"B - A = {d:+.3f} nats"
        self.lines.setTitle(f"step {t} '{show_token(trace.token_label(t), 24)}': {change}")

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        if not hasattr(self, "plot"):
            return
        theme = state.theme_obj
        for plot in (self.lines, self.plot):
            style_plot(plot, theme)
        self.zero.setPen(pg.mkPen(theme.foreground, width=1))
        for line in self.cursor_lines:
            line.setPen(pg.mkPen(theme.accent, width=1.5))
