"""LSTM cell state and hidden state (a GRU's hidden state only: it has no cell): units x time
heatmaps, and the selected unit over time. A layer narrower than the widest shows its own units only.

Diverging colours around 0 with symmetric levels: the largest, over the run, of each step's 98th
percentile of |value|, rounded up to a 1-2-5 step so the colours stay put while the run grows. A few
units whose cells run to +-40 would otherwise wash the rest out; they show at full colour instead
(the tooltip and the line plot give their exact values). Click a row to select that unit.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels import colormaps
from memviz.panels.heatmap import (
    GraphicsPanel,
    Heatmap,
    clamp,
    pixmap_axes,
    show_token,
    stable_extent,
    style_plot,
    token_label,
)
from memviz.panels.hover import HoverReadout, heatmap_source
from memviz.panels.intervention_targets import unit_targets
from memviz.panels.outline import use_contrast_outline
from memviz.panels.pool_jobs import PoolJobs
from memviz.panels.prefix_moments import PrefixMoments
from memviz.panels.recurrent_info import cell_of, layer_size
from memviz.panels.step_heatmap import StepHeatmap
from memviz.panels.step_pool import StepPool
from memviz.panels.token_axis import LabelledTokenAxis, replace_axis
from memviz.panels.token_labels import live_labels
from memviz.panels.unit_rows import UnitRows
from memviz.panels.view_model import ViewModel

STATES = (("cell", "c", "cell state c"), ("hidden", "h", "hidden state h"))

EXPLAIN = {
    "lstm": "Cell state c (the LSTM's working memory) and hidden state h = o * tanh(c) of every unit (rows) "
    "at every step. Click a row to follow that unit in the plot below.",
    "gru": "Hidden state h of every unit (rows) at every step: a GRU has no separate cell, h is its memory "
    "(h = (1 - z) n + z h). Click a row to follow that unit in the plot below.",
}


def max_row_percentile(values: np.ndarray, q: float) -> float:
    """max over rows of np.percentile(values, q, axis=-1), exactly, reading every number once instead
    of partitioning every row (1 s on opening 50,000 steps of two layers' c and h): a sample of
    rows gives a lower bound m; a row can only exceed it when numbers above m fill the sorted
    places from the one after q's (numpy's linear method: q lies between sorted[f] and sorted[f+1]),
    and only such rows are partitioned."""
    if values.size == 0:
        return 0.0
    rows, width = values.shape
    f = int(np.floor(q / 100 * (width - 1)))
    sample = values[:: max(1, rows // 256)]
    bound = np.percentile(sample, q, axis=-1).max()
    above = np.count_nonzero(values > bound, axis=-1)
    candidates = values[above >= width - 1 - f]
    if len(candidates):
        bound = max(bound, np.percentile(candidates, q, axis=-1).max())
    return float(bound)


class RunningPeak:
    """Per layer, the max over steps of the 98th percentile of |x| across units; new steps only."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}
        self.peak: dict[int, float] = {}

    def level(self, column: np.ndarray, layer: int, size: int | None = None) -> float:
        start = self.seen.get(layer, 0)
        if start < len(column):  # the layer's own units (`size`): padding would pull the percentile down
            new = max_row_percentile(np.abs(column[start:, layer, :size]), 98)
            self.peak[layer] = max(self.peak.get(layer, 0.0), new)
            self.seen[layer] = len(column)
        return colormaps.symmetric_level(np.array([self.peak.get(layer, 0.0)]))


class StatePanel(GraphicsPanel):
    name = "state"
    title = "LSTM/GRU cell and hidden state"
    architectures = ("lstm",)
    kinds = ("recurrent",)  # a GRU: the hidden state only

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.add_spin("layer", "layer")
        self.add_spin("unit", "unit")
        self.finish_controls()
        self.setToolTip(EXPLAIN["lstm"])
        self.heatmaps: dict[str, Heatmap] = {}
        for index, (key, letter, label) in enumerate(STATES):
            heatmap = StepHeatmap(
                cmap=colormaps.DIVERGING,
                levels=(-1.0, 1.0),
                x_label="step",
                y_label="unit",
                title=label,
                x_tokens=True,
                value_name=letter,
                grows=(False, True),
            )
            replace_axis(heatmap, "bottom", LabelledTokenAxis("bottom"))
            use_contrast_outline(heatmap)
            heatmap.tooltip_fn = self._tooltip(letter)
            heatmap.value_fn = self._exact(key)
            heatmap.clicked.connect(lambda row, col: self.view.update(unit=self.units.unit_at(row)))
            self.canvas.ci.addItem(heatmap, row=0, col=index)
            self.heatmaps[key] = heatmap
        self._built: tuple[tuple[str, Heatmap], ...] = tuple(self.heatmaps.items())
        self.units = UnitRows(
            self,
            list(self.heatmaps.values()),
            {"variance of c": self._c_variance, "c now": self._c_now},
            changed=lambda: self.render(self.view.state),
        )
        self.readout = HoverReadout(self)
        for key, letter, _ in STATES:
            source = heatmap_source(self.heatmaps[key], self._readout(letter))
            self.readout.add(
                lambda pos, key=key, source=source: source(pos) if key in self.heatmaps else None
            )
        self.axis = LabelledTokenAxis("bottom")
        self.plot: pg.PlotItem = self.canvas.ci.addPlot(
            row=1, col=0, colspan=2, axisItems=pixmap_axes(bottom=self.axis)
        )
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "value")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.legend = self.plot.addLegend(offset=(8, 4))
        self.curves = {
            "cell": self.plot.plot(name="c", pen=pg.mkPen("#e15759", width=1.5)),
            "hidden": self.plot.plot(name="h", pen=pg.mkPen("#4e79a7", width=1.5)),
        }
        for curve in self.curves.values():  # peaks kept: at most about two points per pixel are drawn
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
        # the steps axis grows in the heatmaps' stable steps (no axis re-layout at every step) until
        # the user zooms or pans it
        self.plot.enableAutoRange(x=False)
        self._x_extent = 0
        self.plot.getViewBox().sigRangeChangedManually.connect(lambda *_: setattr(self, "_x_extent", -1))
        self.cursor_line = pg.InfiniteLine(angle=90, movable=False)
        self.plot.addItem(self.cursor_line, ignoreBounds=True)
        self.plot.addItem(pg.InfiniteLine(pos=0, angle=0, movable=False, pen=pg.mkPen("#888888", width=0.5)))
        self.canvas.ci.layout.setRowStretchFactor(0, 3)
        self.canvas.ci.layout.setRowStretchFactor(1, 2)
        self.peaks = {key: RunningPeak() for key, _, _ in STATES}
        # the heatmaps' pooled overviews (key, layer, units) and the line's envelopes (key, layer, unit)
        self.pools: dict[tuple[str, int, int], StepPool] = {}
        self.moments: dict[tuple[str, int, int], PrefixMoments] = {}  # (key, layer, units): the sort's
        self.pool_jobs = PoolJobs(self, lambda: self.render(self.view.state))
        self.envelopes: dict[tuple[str, int, int], StepPool] = {}
        self._pooled_steps = 0  # the longest trace the pools have seen (a shorter one: a new run)
        self.layer = self.unit = self.size = 0
        self.step = -1
        self._shown = (-1, -1, 0)  # layer, complete bins and bin size on screen
        self.apply_theme(view.state)

    def colour_scaled(self) -> tuple[Heatmap, ...]:
        return tuple(self.heatmaps.values())

    @property
    def memory_key(self) -> str:
        """The state that carries the memory: c (LSTM), h (GRU)."""
        return "cell" if "cell" in self.heatmaps else "hidden"

    def _c_variance(self, layer: int, t: int) -> np.ndarray:
        key, size = (self.memory_key, layer, self.size), self.size
        moments = self.moments.get(key)
        if moments is None:
            trace, name = self.trace, self.memory_key
            moments = self.moments[key] = PrefixMoments(lambda lo, hi: trace.array(name)[lo:hi, layer, :size])
        return moments.variance(t + 1)

    def _c_now(self, layer: int, t: int) -> np.ndarray:
        return self.trace.array(self.memory_key)[t, layer, : self.size]

    def _configure(self, trace: Trace | None) -> None:
        """An LSTM shows c and h; a GRU (or a trace without cell states) h alone, across the row."""
        gru = cell_of(trace) == "gru" or (trace is not None and len(trace) > 0 and not trace.has("cell"))
        keys = ("hidden",) if gru else ("cell", "hidden")
        self.setToolTip(EXPLAIN["gru" if gru else "lstm"])
        if tuple(self.heatmaps) == keys:
            return
        layout = self.canvas.ci
        for _key, heatmap in self._built:
            if heatmap in layout.items:
                layout.removeItem(heatmap)
        self.heatmaps = {key: heatmap for key, heatmap in self._built if key in keys}
        for index, heatmap in enumerate(self.heatmaps.values()):
            layout.addItem(heatmap, row=0, col=index, colspan=2 if len(keys) == 1 else 1)
        cell_curve = self.curves["cell"]
        if gru and cell_curve in self.plot.items:
            self.plot.removeItem(cell_curve)  # the legend's entry goes with it
        elif not gru and cell_curve not in self.plot.items:
            self.plot.addItem(cell_curve)
            self.legend.addItem(cell_curve, "c")
        letter = "h" if gru else "c"
        self.units.set_sort_keys({f"variance of {letter}": self._c_variance, f"{letter} now": self._c_now})

    def _exact(self, key: str):
        """The trace's value at (row, step) of heatmap `key` (a pooled column shows a mean)."""

        def value(row: int, col: int) -> float:
            return float(self.trace.array(key)[col, self.layer, self.units.unit_at(row)])

        return value

    def _new_pool(self, key: str, layer: int, units: int) -> StepPool:
        trace = self.trace

        def read(lo: int, hi: int) -> np.ndarray:
            return trace.array(key)[lo:hi, layer, :units]

        return StepPool(read, units)

    def wait_for_work(self, msecs: int = 30000) -> bool:
        """Block until the worker is idle and what it built is drawn (tests, benchmarks)."""
        return self.pool_jobs.wait(msecs)

    def _line(self, key: str, layer: int, unit: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The unit's values over steps 0..n-1: as they are up to CAP steps, else each bin's min and
        max (what a pixel column of the line shows; pyqtgraph's own peak downsampling keeps these)."""
        envelope = self.envelopes.get((key, layer, unit))
        if envelope is None:
            trace = self.trace

            def read(lo: int, hi: int) -> np.ndarray:
                return trace.array(key)[lo:hi, layer, unit : unit + 1]

            envelope = self.envelopes[(key, layer, unit)] = StepPool(read, 1, ("min", "max"))
        low, b = envelope.pooled(n, "min")
        if b == 1:
            return np.arange(n) + 0.5, low[:, 0]
        high, _ = envelope.pooled(n, "max")
        starts = np.arange(len(low)) * b
        centres = (starts + np.minimum(starts + b, n)) / 2
        return np.repeat(centres, 2), np.column_stack([low[:, 0], high[:, 0]]).ravel()

    def _fresh_pools(self, n: int) -> None:
        """The pools hold the trace as it was: a shorter trace is another run (a reset)."""
        if n < self._pooled_steps:
            self.pools.clear()
            self.moments.clear()
            self.envelopes.clear()
            self._shown = (-1, -1, 0)
        self._pooled_steps = n

    def _readout(self, letter: str):
        def line(row: int, col: int, value: float) -> str:
            tokens = live_labels(self.trace)
            token = f" '{show_token(tokens[col], 24)}'" if col < len(tokens) else ""
            return f"{letter}: unit {self.units.unit_at(row)}, step {col}{token}: {value:.3f}"

        return line

    def _tooltip(self, letter: str):
        def text(row: int, col: int, value: float) -> str:
            tokens = live_labels(self.trace)
            row = self.units.unit_at(row)
            return f"{letter}, layer {self.layer}, unit {row}\nstep {token_label(tokens, col)}\n{letter} = {value:.6f}"

        return text

    def intervention_targets_at(self, global_pos: QPoint) -> list[tuple[str, str]]:
        """What a right-click here can change: the unit under the mouse clamped (its cell state or
        hidden state; a GRU's hidden state only), the state reset before the step under it."""
        scene_pos = self.canvas.mapToScene(self.canvas.viewport().mapFromGlobal(global_pos))
        for heatmap in self.heatmaps.values():
            cell = heatmap.cell_at_scene(scene_pos)
            if cell is not None and self.trace is not None and self.step >= 0:
                return unit_targets(self.trace, self.layer, self.units.unit_at(cell[0]), cell[1])
        return []

    def set_trace(self, trace: Trace | None) -> None:
        self.pool_jobs.reset(trace)
        self._configure(trace)
        super().set_trace(trace)
        tokens = live_labels(trace)
        for _key, heatmap in self._built:
            heatmap.set_axis_tokens(tokens)
            heatmap.set_data(heatmap.data[:0, :0])
        self.axis.set_tokens(tokens)
        for curve in self.curves.values():
            curve.setData([], [])
        self.peaks = {key: RunningPeak() for key, _, _ in STATES}
        self.pools.clear()
        self.moments.clear()
        self.envelopes.clear()
        self._pooled_steps = 0
        self.step = -1
        self._shown = (-1, -1, 0)
        self._x_extent = 0

    def render(self, state: ViewState) -> None:
        trace = self.trace
        if trace is None or len(trace) == 0 or state.cursor < 0:
            return
        if not all(trace.has(key) for key in self.heatmaps):
            self._configure(trace)  # a trace without the cell states it was expected to have
            if not all(trace.has(key) for key in self.heatmaps):
                return
        t = clamp(state.cursor, len(trace))
        self._fresh_pools(len(trace))
        columns = {key: trace.array(key) for key in self.heatmaps}  # [T, L, H]
        layers, width = columns["hidden"].shape[1:]
        self.layer = layer = clamp(state.layer, layers)
        self.size = units = layer_size(trace, layer, width)  # units past it are padding
        self.unit = unit = clamp(state.unit, units)
        self.step = t
        self.sync_spin("layer", layer, layers - 1)
        self.sync_spin("unit", unit, units - 1)
        n = t + 1
        wanted = {
            (key, layer, units): (lambda key=key: self._new_pool(key, layer, units), units)
            for key in self.heatmaps
        }
        what = f"building layer {layer}'s states over {n:,} steps\u2026"
        if not self.pool_jobs.ready(self.pools, wanted, n, what):
            return  # the pictures shown stay until the worker delivers
        reordered = self.units.update(layer, t, units)
        full = 0
        for key, heatmap in self.heatmaps.items():
            level = self.peaks[key].level(columns[key], layer, units)
            if key == "hidden":
                level = min(level, 1.0)
            # the whole run 0..t, a column per bin of b steps (b = 1 up to CAP steps): complete bins
            # never change, so with the same layer, bin size and rows only the others are coloured
            pooled, b = self.pools[(key, layer, units)].pooled(n)
            full = n // b
            same = self._shown[0] == layer and self._shown[2] == b and not reordered
            keep = (units, min(self._shown[1], full)) if same else None
            heatmap.set_steps(self.units.rows(pooled.T), n, b, levels=(-level, level), keep=keep)
            heatmap.set_cursor_col(t)
            heatmap.set_highlight_row(self.units.row_of_unit(unit))
            heatmap.plot.getAxis("bottom").grew(n)
            x, y = self._line(key, layer, unit, n)
            # an envelope (min and max a bin) is a dense zig-zag: a 1-pixel pen draws it several
            # times as fast as the wide pen of a line through every step, and looks the same
            width = 1.5 if len(x) == n else 1.0
            curve = self.curves[key]
            if curve.opts["pen"].widthF() != width:
                curve.setPen(pg.mkPen(curve.opts["pen"].color(), width=width))
            curve.setData(x, y)
        self.units.show_rows(unit)
        self._shown = (layer, full, b)
        extent = stable_extent(t + 1)
        if self._x_extent >= 0 and extent != self._x_extent:
            self._x_extent = extent
            self.plot.setXRange(0, extent, padding=0.0)
        self.cursor_line.setPos(t + 0.5)
        self.axis.grew(t + 1)
        theme = state.theme_obj
        title = (f"unit {unit} (layer {layer})", theme.foreground, f"{theme.font_size}pt")
        if title != getattr(self, "_title", None):  # a new title re-lays out the canvas: not every step
            self._title = title
            self.plot.setTitle(title[0], color=title[1], size=title[2])
        self.note.setText(f"layer {layer}  unit {unit}  step {token_label(live_labels(trace), t)}")

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        self._title = None  # written again in the theme's colour and size
        theme = state.theme_obj
        for _key, heatmap in getattr(self, "_built", ()):
            heatmap.apply_theme(theme)
        if hasattr(self, "plot"):
            style_plot(self.plot, theme)
            self.cursor_line.setPen(pg.mkPen(theme.accent, width=1.5))
            self.legend.setLabelTextColor(theme.foreground)
            self.legend.setLabelTextSize(f"{theme.font_size}pt")
