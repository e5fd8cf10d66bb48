"""The gates of one layer of a recurrent model as heatmaps, units x time, a cursor at the current step:
an LSTM's i, f, g, o (four heatmaps) or a GRU's r, z, n (three), as the trace's `gate_names` say.
A layer narrower than the widest shows its own units only (the rest is padding)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels import colormaps
from memviz.panels.heatmap import GraphicsPanel, Heatmap, clamp, show_token, token_label
from memviz.panels.hover import HoverReadout, heatmap_source
from memviz.panels.intervention_targets import unit_targets
from memviz.panels.outline import use_contrast_outline
from memviz.panels.pool_jobs import PoolJobs
from memviz.panels.prefix_moments import PrefixMoments
from memviz.panels.recurrent_info import GATES, LSTM_GATES, Gate, cell_of, gates_of, layer_size
from memviz.panels.scales import ColourScale
from memviz.panels.step_heatmap import StepHeatmap
from memviz.panels.step_pool import StepPool
from memviz.panels.token_axis import LabelledTokenAxis, replace_axis
from memviz.panels.token_labels import live_labels
from memviz.panels.unit_rows import UnitRows
from memviz.panels.view_model import ViewModel

MAX_GATES = 4  # an LSTM's; a GRU shows three of the heatmaps

EXPLAIN = {
    "lstm": "Gates of every unit (rows) at every step (columns): i how much is written, f how much of the "
    "cell is kept, g what is written (tanh, -1..1), o how much of the cell is shown.",
    "gru": "Gates of every unit (rows) at every step (columns): r how much of h the candidate sees, "
    "z how much of h is kept (h = (1 - z) n + z h), n the candidate (tanh, -1..1).",
}


class GatesPanel(GraphicsPanel):
    name = "gates"
    title = "LSTM/GRU gates"
    architectures = ("lstm",)
    kinds = ("recurrent",)  # every recurrent cell: the gates are the trace's gate_names

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.add_spin("layer", "layer")
        self.finish_controls()
        self.setToolTip(EXPLAIN["lstm"])
        self.gates: tuple[Gate, ...] = gates_of(None)
        # all four are built once; a trace shows the first len(gates), configured for its gates
        self._built: tuple[Heatmap, ...] = tuple(self._heatmap(index) for index in range(MAX_GATES))
        self.heatmaps: list[Heatmap] = list(self._built)
        self._place()
        self.units = UnitRows(
            self,
            list(self._built),
            {"variance of f": self._kept_variance, "f now": self._kept_now},
            changed=lambda: self.render(self.view.state),
        )
        self.readout = HoverReadout(self)
        for index, heatmap in enumerate(self._built):
            self.readout.add(self._only_shown(heatmap, heatmap_source(heatmap, self._readout(index))))
        self.layer = 0
        self.size = 0  # units of the layer shown (its real size)
        self.step = -1
        self.pools: dict[tuple[int, int, int], StepPool] = {}  # (layer, gate, units): pooled overviews
        self.moments: dict[tuple[int, int], PrefixMoments] = {}  # (layer, units): the sort's variances
        self.pool_jobs = PoolJobs(self, lambda: self.render(self.view.state))
        self._pooled_steps = 0  # the longest trace the pools have seen (a shorter one: a new run)
        self._shown = (-1, -1, 0)  # layer, complete bins and bin size on screen
        self.apply_theme(view.state)

    def _heatmap(self, index: int) -> Heatmap:
        gate = GATES[LSTM_GATES[index]]
        heatmap = StepHeatmap(
            cmap=gate.cmap,
            levels=gate.levels,
            x_label="step",
            y_label="unit",
            title=f"{gate.letter}: {gate.label}",
            x_tokens=True,
            value_name=gate.letter,
            grows=(False, True),
        )
        replace_axis(heatmap, "bottom", LabelledTokenAxis("bottom"))
        use_contrast_outline(heatmap)
        heatmap.tooltip_fn = self._tooltip(index)
        heatmap.value_fn = lambda row, col: float(
            self.trace.array("gates")[col, self.layer, index, self.units.unit_at(row)]
        )
        heatmap.clicked.connect(lambda row, col: self.view.update(unit=self.units.unit_at(row)))
        return heatmap

    def _place(self) -> None:
        """The shown heatmaps in a grid of two columns (three gates: the third spans the row)."""
        layout = self.canvas.ci
        for heatmap in self._built:
            if heatmap in layout.items:
                layout.removeItem(heatmap)
        shown = self.heatmaps
        for index, heatmap in enumerate(shown):
            last_alone = index == len(shown) - 1 and index % 2 == 0
            layout.addItem(heatmap, row=index // 2, col=index % 2, colspan=2 if last_alone else 1)

    def _only_shown(self, heatmap: Heatmap, source):
        return lambda scene_pos: source(scene_pos) if heatmap in self.heatmaps else None

    def colour_scaled(self) -> tuple[Heatmap, ...]:
        return tuple(self.heatmaps)

    def _configure(self, trace: Trace | None) -> None:
        """Show the trace's gates: as many heatmaps, each with its gate's title, colours and range."""
        gates = gates_of(trace)[:MAX_GATES]
        self.setToolTip(EXPLAIN.get(cell_of(trace), EXPLAIN["lstm"]))
        if gates == self.gates:
            return
        self.gates = gates
        for heatmap, gate in zip(self._built, gates, strict=False):
            heatmap.cmap_name = gate.cmap
            heatmap.value_name = gate.letter
            heatmap.scale = ColourScale(gate.levels, gate.letter)
            heatmap._set_levels(*gate.levels)
            heatmap.colorbar.setColorMap(colormaps.colormap(gate.cmap))
            heatmap.plot.setTitle(f"{gate.letter}: {gate.label}")
        if len(gates) != len(self.heatmaps):
            self.heatmaps = list(self._built[: len(gates)])
            self._place()
        kept = gates[1].letter if len(gates) > 1 else gates[0].letter  # f (LSTM) or z (GRU): what is kept
        self.units.set_sort_keys({f"variance of {kept}": self._kept_variance, f"{kept} now": self._kept_now})
        self.apply_theme(self.view.state)

    def _kept_variance(self, layer: int, t: int) -> np.ndarray:
        key, size = (layer, self.size), self.size
        moments = self.moments.get(key)
        if moments is None:
            trace = self.trace
            moments = self.moments[key] = PrefixMoments(
                lambda lo, hi: trace.array("gates")[lo:hi, layer, 1, :size]
            )
        return moments.variance(t + 1)

    def _kept_now(self, layer: int, t: int) -> np.ndarray:
        return self.trace.array("gates")[t, layer, 1, : self.size]

    def _new_pool(self, layer: int, gate: int, units: int) -> StepPool:
        trace = self.trace

        def read(lo: int, hi: int) -> np.ndarray:
            return trace.array("gates")[lo:hi, layer, gate, :units]

        return StepPool(read, units)

    def wait_for_work(self, msecs: int = 30000) -> bool:
        """Block until the worker is idle and what it built is drawn (tests, benchmarks)."""
        return self.pool_jobs.wait(msecs)

    def _readout(self, gate: int):
        def line(row: int, col: int, value: float) -> str:
            letter = self.gates[gate].letter if gate < len(self.gates) else "?"
            tokens = live_labels(self.trace)
            token = f" '{show_token(tokens[col], 24)}'" if col < len(tokens) else ""
            return f"{letter}: unit {self.units.unit_at(row)}, step {col}{token}: {value:.3f}"

        return line

    def _tooltip(self, gate: int):
        def text(row: int, col: int, value: float) -> str:
            letter = self.gates[gate].letter if gate < len(self.gates) else "?"
            tokens = live_labels(self.trace)
            unit = self.units.unit_at(row)
            return f"{letter} gate, layer {self.layer}, unit {unit}\nstep {token_label(tokens, col)}\n{letter} = {value:.6f}"

        return text

    def intervention_targets_at(self, global_pos: QPoint) -> list[tuple[str, str]]:
        """What a right-click here can change: the unit under the mouse clamped (its cell state or
        hidden state; a GRU's hidden state only), the state reset before the step under it."""
        scene_pos = self.canvas.mapToScene(self.canvas.viewport().mapFromGlobal(global_pos))
        for heatmap in self.heatmaps:
            cell = heatmap.cell_at_scene(scene_pos)
            if cell is not None and self.trace is not None and self.step >= 0:
                return unit_targets(self.trace, self.layer, self.units.unit_at(cell[0]), cell[1])
        return []

    def set_trace(self, trace: Trace | None) -> None:
        self.pool_jobs.reset(trace)
        self._configure(trace)
        super().set_trace(trace)
        tokens = live_labels(trace)
        for heatmap in self._built:
            heatmap.set_axis_tokens(tokens)
            heatmap.set_data(heatmap.data[:0, :0])
        self.pools.clear()
        self.moments.clear()
        self._pooled_steps = 0
        self.step = -1
        self._shown = (-1, -1, 0)

    def render(self, state: ViewState) -> None:
        trace = self.trace
        if trace is None or len(trace) == 0 or state.cursor < 0 or not trace.has("gates"):
            return
        gates = trace.array("gates")  # [T, L, G, H]
        t = clamp(state.cursor, len(trace))
        self.layer = layer = clamp(state.layer, gates.shape[1])
        self.size = size = layer_size(trace, layer, gates.shape[3])  # units past it are padding
        self.step = t
        self.sync_spin("layer", layer, gates.shape[1] - 1)
        if len(trace) < self._pooled_steps:  # a shorter trace: another run
            self.pools.clear()
            self.moments.clear()
            self._shown = (-1, -1, 0)
        self._pooled_steps = len(trace)
        n = t + 1
        wanted = {
            (layer, index, size): (lambda index=index: self._new_pool(layer, index, size), size)
            for index in range(len(self.heatmaps))
        }
        what = f"building layer {layer}'s gates over {n:,} steps\u2026"
        if not self.pool_jobs.ready(self.pools, wanted, n, what):
            return  # the pictures shown stay until the worker delivers
        reordered = self.units.update(layer, t, size)
        unit = clamp(state.unit, size)
        full = b = 0
        for index, heatmap in enumerate(self.heatmaps):
            # the whole run 0..t, a column per bin of b steps (b = 1 up to CAP steps): complete bins
            # never change, so with the same layer, bin size and row order only the others are coloured
            pooled, b = self.pools[(layer, index, size)].pooled(n)
            full = n // b
            same = self._shown[0] == layer and self._shown[2] == b and not reordered
            keep = (size, min(self._shown[1], full)) if same else None
            heatmap.set_steps(self.units.rows(pooled.T), n, b, keep=keep)
            heatmap.set_cursor_col(t)
            heatmap.set_highlight_row(self.units.row_of_unit(unit))
            heatmap.plot.getAxis("bottom").grew(n)
        self._shown = (layer, full, b)
        self.units.show_rows(unit)
        self.note.setText(f"layer {layer}  step {token_label(live_labels(trace), t)}")

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        for heatmap in getattr(self, "_built", ()):
            heatmap.apply_theme(state.theme_obj)
