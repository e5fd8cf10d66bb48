"""The next-token distribution: the top-k candidates after reading the current token, best first.

The token that was actually read next (trace.token_ids[cursor + 1], when there is one) is highlighted.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from memviz.core.trace import Trace
from memviz.ui.panels.heatmap import (
    GraphicsPanel,
    Labels,
    add_static_plot,
    candidate_text,
    clamp,
    show_token,
    style_plot,
    theme_font,
    token_label,
)
from memviz.ui.view import ViewModel, ViewState


class DistributionPanel(GraphicsPanel):
    name = "distribution"
    title = "Next-token distribution"
    architectures = ()

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.finish_controls()
        self.setToolTip(
            "The model's probabilities for the next token after reading the current one, best first. "
            "Highlighted: the token that actually came next (read from the text, or sampled)."
        )
        self.plot: pg.PlotItem = add_static_plot(self.canvas.ci)
        self.plot.setLabel("bottom", "probability")
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], pen=None)
        self.actual_bar = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], pen=None)
        self.plot.addItem(self.bars)
        self.plot.addItem(self.actual_bar)
        self.values = Labels(align=Qt.AlignmentFlag.AlignLeft)
        self.values.setZValue(6)
        self.plot.addItem(self.values, ignoreBounds=True)
        self.ids = np.zeros(0, dtype=np.int64)
        self.probs = np.zeros(0, dtype=np.float32)
        self.labels: list[str] = []
        self.highlight: int | None = None  # rank of the actual next token in the bars
        self.next_id: int | None = None
        self.step = -1
        self.apply_theme(view.state)

    def set_trace(self, trace: Trace | None) -> None:
        super().set_trace(trace)
        self.step = -1

    def token_text(self, token_id: int) -> str:
        return candidate_text(self.trace, token_id, None)

    def render(self, state: ViewState) -> None:
        trace = self.trace
        if trace is None or len(trace) == 0 or state.cursor < 0:
            return
        t = clamp(state.cursor, len(trace))
        self.step = t
        self.ids = trace.array("topk_ids")[t]
        self.probs = trace.array("topk_probs")[t]
        k = len(self.probs)
        ranks = np.arange(k)
        self.labels = [self.token_text(i) for i in self.ids]
        self.next_id = trace.token_ids[t + 1] if t + 1 < len(trace) else None
        hits = np.flatnonzero(self.ids == self.next_id) if self.next_id is not None else []
        self.highlight = int(hits[0]) if len(hits) else None
        self.bars.setOpts(x0=np.zeros(k), y=ranks, width=self.probs)
        if self.highlight is None:
            self.actual_bar.setOpts(x0=[], y=[], width=[])
        else:
            self.actual_bar.setOpts(x0=[0.0], y=[self.highlight], width=[self.probs[self.highlight]])
        self.plot.getAxis("left").setTicks([[(r, show_token(s, 10)) for r, s in zip(ranks, self.labels, strict=True)]])
        fg = state.theme_obj.foreground
        self.values.set_items([(float(p), float(rank), f"{p:.4f}", fg) for rank, p in enumerate(self.probs)])
        top = max(float(self.probs[0]) if k else 0.0, 1e-6)
        self.plot.setRange(xRange=(0, min(1.0, top * 1.18)), yRange=(-0.6, k - 0.4), padding=0.0)
        theme = state.theme_obj
        after = token_label(trace.token_text, t)
        self.plot.setTitle(f"next token after step {after}", color=theme.foreground, size=f"{theme.title_size}pt")
        if self.next_id is None:
            actual = "actual next token: none yet"
        else:
            kind = "sampled" if trace.generated[t + 1] else "read"
            where = f"rank {self.highlight + 1}" if self.highlight is not None else f"not in the top {k}"
            actual = f"actual next ({kind}): '{show_token(trace.token_text[t + 1], 24)}', {where}"
        self.note.setText(actual)

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        theme = state.theme_obj
        if not hasattr(self, "plot"):
            return
        style_plot(self.plot, theme)
        self.plot.getAxis("left").setStyle(tickFont=theme_font(theme))
        self.bars.setOpts(brush="#6f8fb7" if theme.is_dark else "#9fb7d6")
        self.actual_bar.setOpts(brush=theme.accent)
        self.values.font = theme_font(theme, -2)
        self.values.items = [(x, y, text, theme.foreground) for x, y, text, _ in self.values.items]
        self.values.update()
