"""Working-memory span of an LSTM (or a GRU): how much of what each step wrote is still in each cell now.

The cell update c_t = f_t * c_{t-1} + i_t * g_t unrolls to c_t = sum_s (prod_{r=s+1..t} f_r) i_s g_s:
what step s wrote reaches step t scaled by the product of the forget gates in between. The panel
shows that retention R_t[u, s] = prod_{r=s+1..t} f_r[u] for every unit u and every step s <= t
(1 at s = t), and each unit's effective memory length sum_s R_t[u, s] in steps (for a constant
forget gate f it tends to 1 / (1 - f)). A GRU's h_t = (1 - z_t) n_t + z_t h_{t-1} keeps what step s
wrote by the product of its update gates z in between: the same picture with z for f (gate 1 of both).
A layer narrower than the widest shows its own units only (the rest is padding).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels.heatmap import (
    GraphicsPanel,
    clamp,
    pixmap_axes,
    show_token,
    style_plot,
    token_label,
)
from memviz.panels.hover import HoverReadout, heatmap_source
from memviz.panels.outline import use_contrast_outline
from memviz.panels.pool_jobs import PoolJobs
from memviz.panels.recurrent_info import cell_of, layer_size
from memviz.panels.step_heatmap import StepHeatmap
from memviz.panels.step_pool import RetentionPool
from memviz.panels.token_axis import LabelledTokenAxis, replace_axis
from memviz.panels.token_labels import live_labels
from memviz.panels.unit_rows import UnitRows
from memviz.panels.view_model import ViewModel

EXPLAIN = (
    "Working-memory span. Top: for every unit (row) and every earlier step s (column), the fraction of "
    "what step s wrote into the cell that is still there at the current step t: the product of the unit's "
    "forget gates f from s+1 to t (1 at s = t). Bottom: each unit's effective memory length, the sum of "
    "that row, in steps (a unit with a constant forget gate f keeps about 1/(1-f) steps)."
)
EXPLAIN_GRU = (
    "Working-memory span. Top: for every unit (row) and every earlier step s (column), the fraction of "
    "what step s wrote into h that is still there at the current step t: the product of the unit's "
    "update gates z from s+1 to t (1 at s = t; h = (1 - z) n + z h). Bottom: each unit's effective memory "
    "length, the sum of that row, in steps (a unit with a constant update gate z keeps about 1/(1-z) steps)."
)
BAR_WIDTH = 0.8  # a unit's bar, with a gap to the next
TOUCHING_BARS = 64  # more units than this: the bars touch (see render)
TITLES = {"lstm": "retention: prod f from s+1 to now", "gru": "working-memory span, running product of z"}


class SpanPanel(GraphicsPanel):
    name = "span"
    title = "LSTM/GRU working-memory span"
    architectures = ("lstm", "gru")  # gate 1 is f (LSTM) or z (GRU): the span is their running product
    kinds = ("recurrent",)

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.add_spin("layer", "layer")
        self.finish_controls()
        self.setToolTip(EXPLAIN)
        self.heatmap = StepHeatmap(
            cmap="inferno",
            levels=(0.0, 1.0),
            x_label="written at step s",
            y_label="unit",
            title="retention: prod f from s+1 to now",
            x_tokens=True,
            value_name="kept",
            grows=(False, True),
        )
        replace_axis(self.heatmap, "bottom", LabelledTokenAxis("bottom"))
        use_contrast_outline(self.heatmap)
        self.heatmap.tooltip_fn = self._tooltip
        self.heatmap.value_fn = self._exact
        self.heatmap.clicked.connect(lambda row, col: self.view.update(unit=self.units.unit_at(row)))
        self.canvas.ci.addItem(self.heatmap, row=0, col=0)
        self.units = UnitRows(
            self,
            [self.heatmap],
            {"memory length": lambda layer, t: self.span},
            changed=lambda: self.render(self.view.state),
        )
        self.readout = HoverReadout(self)
        self.readout.add(heatmap_source(self.heatmap, self._readout))
        self.plot: pg.PlotItem = self.canvas.ci.addPlot(
            row=1, col=0, title="effective memory length", axisItems=pixmap_axes()
        )
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "unit")
        self.plot.setLabel("left", "steps")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8, brush="#4e79a7", pen=None)
        self.selected_bar = pg.BarGraphItem(x=[], height=[], width=0.8, brush="#ffb000", pen=None)
        self.plot.addItem(self.bars)
        self.plot.addItem(self.selected_bar)
        self.plot.scene().sigMouseClicked.connect(self._bar_clicked)
        self.canvas.ci.layout.setRowStretchFactor(0, 3)
        self.canvas.ci.layout.setRowStretchFactor(1, 2)
        self.pools: dict[tuple[int, int], RetentionPool] = {}  # (layer, units): R_t pooled over s
        self._pooled_steps = 0  # the longest trace the pools have seen (a shorter one: a new run)
        self.retention = np.zeros((0, 0))  # R_t [units, bins] at the cursor (a bin: its mean)
        self.span = np.zeros(0)
        self.layer = self.unit = 0
        self.step = -1
        self.cell = "lstm"
        self.pool_jobs = PoolJobs(self, lambda: self.render(self.view.state))
        self.apply_theme(view.state)

    def _new_pool(self, layer: int, units: int) -> RetentionPool:
        trace = self.trace

        def read_f(lo: int, hi: int) -> np.ndarray:
            return trace.array("gates")[lo:hi, layer, 1, :units]

        return RetentionPool(read_f, units)

    def wait_for_work(self, msecs: int = 30000) -> bool:
        """Block until the worker is idle and what it built is drawn (tests, benchmarks)."""
        return self.pool_jobs.wait(msecs)

    def _exact(self, row: int, col: int) -> float:
        """R_t[unit, s] at the cursor t for the step s under the mouse (a column may be a bin's mean)."""
        pool = self.pools.get((self.layer, len(self.span)))
        if pool is None:
            return float("nan")
        return pool.exact(self.units.unit_at(row), col, self.step)

    def _readout(self, row: int, col: int, value: float) -> str:
        tokens = live_labels(self.trace)
        token = f" '{show_token(tokens[col], 24)}'" if col < len(tokens) else ""
        return f"unit {self.units.unit_at(row)}: of what step {col}{token} wrote, {value:.3f} is kept"

    def _tooltip(self, row: int, col: int, value: float) -> str:
        tokens = live_labels(self.trace)
        row = self.units.unit_at(row)
        return (
            f"unit {row}, layer {self.layer}\nof what step {token_label(tokens, col)} wrote,\n"
            f"kept at step {token_label(tokens, self.step)}: {value:.6f}"
        )

    def _bar_clicked(self, event) -> None:
        if not self.span.size or not self.plot.sceneBoundingRect().contains(event.scenePos()):
            return
        x = self.plot.vb.mapSceneToView(event.scenePos()).x()
        unit = int(round(x))
        if 0 <= unit < len(self.span):
            self.view.update(unit=unit)

    def set_trace(self, trace: Trace | None) -> None:
        self.pool_jobs.reset(trace)
        super().set_trace(trace)
        self.cell = cell_of(trace)
        self.setToolTip(EXPLAIN_GRU if self.cell == "gru" else EXPLAIN)
        self.heatmap.plot.setTitle(TITLES[self.cell])
        self.heatmap.value_name = "kept"
        self.apply_theme(self.view.state)
        self.heatmap.set_axis_tokens(live_labels(trace))
        self.heatmap.set_data(self.heatmap.data[:0, :0])
        self.pools.clear()
        self._pooled_steps = 0
        self.step = -1

    def render(self, state: ViewState) -> None:
        trace = self.trace
        if trace is None or len(trace) == 0 or state.cursor < 0 or not trace.has("gates"):
            return
        gates = trace.array("gates")
        t = clamp(state.cursor, len(trace))
        self.layer = layer = clamp(state.layer, gates.shape[1])
        size = layer_size(trace, layer, gates.shape[3])  # units past it are padding
        self.unit = unit = clamp(state.unit, size)
        self.step = t
        self.sync_spin("layer", layer, gates.shape[1] - 1)
        if len(trace) < self._pooled_steps:  # a shorter trace: another run
            self.pools.clear()
        self._pooled_steps = len(trace)
        key = (layer, size)
        wanted = {key: (lambda: self._new_pool(layer, size), size)}
        what = f"building layer {layer}'s span over {t + 1:,} steps\u2026"
        if not self.pool_jobs.ready(self.pools, wanted, t + 1, what, work="span"):
            return  # the picture shown stays until the worker delivers
        pool = self.pools[key]
        # every column of R_t changes at every step: the overview is computed from the pool's bins
        # (one multiplication a bin), the memory lengths exactly from the same bins
        self.retention, self.span, b = pool.pooled(t + 1)
        self.units.update(layer, t, len(self.span))
        self.heatmap.set_steps(self.units.rows(self.retention), t + 1, b)
        self.heatmap.set_cursor_col(t)
        self.heatmap.set_highlight_row(self.units.row_of_unit(unit))
        self.heatmap.plot.getAxis("bottom").grew(t + 1)
        self.units.show_rows(unit)
        units = np.arange(len(self.span))
        # bars narrower than a pixel or two alias: whole runs of units vanish where their rects miss
        # the pixel centres (256 units in a 250-pixel dock). Touching bars tile the row instead
        width = BAR_WIDTH if len(units) <= TOUCHING_BARS else 1.0
        self.bars.setOpts(x=units, height=self.span, width=width)
        self.selected_bar.setOpts(x=[unit], height=[self.span[unit]], width=width)
        self.note.setText(
            f"layer {layer}  step {token_label(live_labels(trace), t)}  unit {unit}: {self.span[unit]:.2f} steps"
        )

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        theme = state.theme_obj
        if hasattr(self, "heatmap"):
            self.heatmap.apply_theme(theme)
            style_plot(self.plot, theme)
            self.plot.setTitle(
                "effective memory length (steps)", color=theme.foreground, size=f"{theme.font_size}pt"
            )
            self.bars.setOpts(brush="#7f9fc7" if theme.is_dark else "#4e79a7")
            self.selected_bar.setOpts(brush=theme.accent)
