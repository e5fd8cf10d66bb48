"""LSTM gates i, f, g, o of one layer as four heatmaps: units x time, a cursor at the current step."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels import colormaps
from memviz.panels.heatmap import GraphicsPanel, Heatmap, clamp, show_token, token_label
from memviz.panels.hover import HoverReadout, heatmap_source
from memviz.panels.outline import use_contrast_outline
from memviz.panels.token_axis import LabelledTokenAxis, replace_axis
from memviz.panels.unit_rows import UnitRows
from memviz.panels.view_model import ViewModel

GATES = (
    ("i", "input gate", colormaps.SEQUENTIAL, (0.0, 1.0)),
    ("f", "forget gate", colormaps.SEQUENTIAL, (0.0, 1.0)),
    ("g", "candidate g (tanh)", colormaps.DIVERGING, (-1.0, 1.0)),
    ("o", "output gate", colormaps.SEQUENTIAL, (0.0, 1.0)),
)


class GatesPanel(GraphicsPanel):
    name = "gates"
    title = "LSTM gates"
    architectures = ("lstm",)

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.add_spin("layer", "layer")
        self.finish_controls()
        self.setToolTip(
            "Gates of every unit (rows) at every step (columns): i how much is written, f how much of the "
            "cell is kept, g what is written (tanh, -1..1), o how much of the cell is shown."
        )
        self.heatmaps: list[Heatmap] = []
        for index, (letter, label, cmap, levels) in enumerate(GATES):
            heatmap = Heatmap(
                cmap=cmap,
                levels=levels,
                x_label="step",
                y_label="unit",
                title=f"{letter}: {label}",
                x_tokens=True,
                value_name=letter,
                grows=(False, True),
            )
            replace_axis(heatmap, "bottom", LabelledTokenAxis("bottom"))
            use_contrast_outline(heatmap)
            heatmap.tooltip_fn = self._tooltip(index)
            heatmap.clicked.connect(lambda row, col: self.view.update(unit=self.units.unit_at(row)))
            self.canvas.ci.addItem(heatmap, row=index // 2, col=index % 2)
            self.heatmaps.append(heatmap)
        self.units = UnitRows(
            self,
            self.heatmaps,
            {"variance of f": self._f_variance, "f now": self._f_now},
            changed=lambda: self.render(self.view.state),
        )
        self.readout = HoverReadout(self)
        for index, heatmap in enumerate(self.heatmaps):
            self.readout.add(heatmap_source(heatmap, self._readout(index)))
        self.layer = 0
        self.step = -1
        self._shown = (-1, -1)  # layer and step on screen
        self.apply_theme(view.state)

    def _f_variance(self, layer: int, t: int) -> np.ndarray:
        return self.trace.array("gates")[: t + 1, layer, 1].astype(np.float64).var(axis=0)

    def _f_now(self, layer: int, t: int) -> np.ndarray:
        return self.trace.array("gates")[t, layer, 1]

    def _readout(self, gate: int):
        letter = GATES[gate][0]

        def line(row: int, col: int, value: float) -> str:
            tokens = self.trace.token_text if self.trace is not None else []
            token = f" '{show_token(tokens[col], 24)}'" if col < len(tokens) else ""
            return f"{letter}: unit {self.units.unit_at(row)}, step {col}{token}: {value:.3f}"

        return line

    def _tooltip(self, gate: int):
        letter = GATES[gate][0]

        def text(row: int, col: int, value: float) -> str:
            tokens = self.trace.token_text if self.trace is not None else []
            unit = self.units.unit_at(row)
            return f"{letter} gate, layer {self.layer}, unit {unit}\nstep {token_label(tokens, col)}\n{letter} = {value:.6f}"

        return text

    def set_trace(self, trace: Trace | None) -> None:
        super().set_trace(trace)
        tokens = trace.token_text if trace is not None else []
        for heatmap in self.heatmaps:
            heatmap.set_axis_tokens(tokens)
            heatmap.set_data(heatmap.data[:0, :0])
        self.step = -1
        self._shown = (-1, -1)

    def render(self, state: ViewState) -> None:
        trace = self.trace
        if trace is None or len(trace) == 0 or state.cursor < 0 or not trace.has("gates"):
            return
        gates = trace.array("gates")  # [T, L, 4, H]
        t = clamp(state.cursor, len(trace))
        self.layer = layer = clamp(state.layer, gates.shape[1])
        self.step = t
        self.sync_spin("layer", layer, gates.shape[1] - 1)
        reordered = self.units.update(layer, t, gates.shape[3])
        # earlier steps never change: with the same layer (and row order) only the new column is coloured
        same = self._shown[0] == layer and not reordered
        keep = (gates.shape[3], min(self._shown[1], t) + 1) if same else None
        self._shown = (layer, t)
        unit = clamp(state.unit, gates.shape[3])
        for index, heatmap in enumerate(self.heatmaps):
            heatmap.set_data(self.units.rows(gates[: t + 1, layer, index].T), keep=keep)
            heatmap.set_cursor_col(t)
            heatmap.set_highlight_row(self.units.row_of_unit(unit))
            heatmap.plot.getAxis("bottom").grew(t + 1)
        self.units.show_rows(unit)
        self.note.setText(f"layer {layer}  step {token_label(trace.token_text, t)}")

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        for heatmap in getattr(self, "heatmaps", []):
            heatmap.apply_theme(state.theme_obj)
