"""The `timescales` experiment's figure: per layer, how many units have each time constant
-1/ln f̄ (a log axis in steps), one outline per model; the capped units pile up in the last bin,
marked by a dashed line at the cap."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from memviz.core.view import ViewState
from memviz.experiments.result import ExperimentResult
from memviz.export.experiment_figure import ExperimentFigure, model_colour

STEP_NAMES = {"char": "characters", "word": "words"}


class TimescalesFigure(ExperimentFigure):
    name = "timescales"
    title = "unit time constants"

    def __init__(self, view, result: ExperimentResult, parent=None) -> None:
        self.labels: list[pg.TextItem] = []  # the longest unit of each layer (one model only)
        super().__init__(view, result, parent)

    def draw(self, result: ExperimentResult) -> None:
        edges = np.asarray(result.extra["bins"], dtype=float)
        per_model: dict = result.extra["per_model"]
        names = result.model_names()
        layers = max((len(per_model[n]["layers"]) for n in names), default=0)
        cap = float(result.settings.get("time_constant_cap", edges[-1]))
        kinds = {per_model[n].get("tokenizer") for n in names}
        steps = STEP_NAMES.get(kinds.pop(), "steps") if len(kinds) == 1 else "steps"
        for layer in range(layers):
            plot = self.add_plot(
                row=0,
                col=layer,
                x_label=f"time constant −1/ln f̄ ({steps})",
                y_label="units" if layer == 0 else "",
                log_x=True,
            )
            plot.setTitle(f"layer {layer}")
            if layer == layers - 1 and len(names) > 1:
                self.add_legend(plot)  # top right of the last layer: the long time constants are few
            top, capped = 0.0, 0
            for index, name in enumerate(names):
                model_layers = per_model[name]["layers"]
                if layer >= len(model_layers):
                    continue
                counts = np.asarray(model_layers[layer]["histogram"], dtype=float)
                top = max(top, counts.max(initial=0))
                capped += int(model_layers[layer].get("capped", 0))
                colour = model_colour(index)
                fill = pg.mkColor(colour)
                fill.setAlpha(70 if len(names) > 1 else 140)
                plot.plot(
                    edges,
                    counts,
                    stepMode="center",
                    fillLevel=0,
                    brush=pg.mkBrush(fill),
                    pen=pg.mkPen(colour, width=2.5),
                    name=self._legend_name(name, per_model[name]),
                )
            if capped:  # they sit in the last bin: say where the cap is
                self.reference_line(plot, float(np.log10(cap)), horizontal=False)  # log axis: log10 x
            if len(names) == 1:
                self._label_longest(plot, per_model[names[0]], layer, edges, lift=0.03 * top)
            plot.setXRange(np.log10(edges[0]), np.log10(edges[-1]), padding=0.02)
            plot.setYRange(0, max(1.0, top) * 1.12, padding=0)

    def _label_longest(
        self, plot: pg.PlotItem, part: dict, layer: int, edges: np.ndarray, lift: float
    ) -> None:
        """The layer's longest-holding unit named above its bin."""
        units = [u for u in part.get("top_units", ()) if u["layer"] == layer]
        if not units:
            return
        unit = units[0]  # top_units is longest first
        tau = float(unit["time_constant"])
        counts = part["layers"][layer]["histogram"]
        where = int(np.clip(np.searchsorted(edges, tau, side="right") - 1, 0, len(counts) - 1))
        label = pg.TextItem(f"unit {unit['unit']}: {tau:,.0f}", anchor=(0.5, 1.0))
        label.setPos(float(np.log10(tau)), float(counts[where]) + lift)
        plot.addItem(label)
        self.labels.append(label)

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        from memviz.panels.plot_style import theme_font

        for label in self.labels:
            label.setColor(state.theme_obj.foreground)
            label.setFont(theme_font(state.theme_obj, -2))

    @staticmethod
    def _legend_name(name: str, part: dict) -> str:
        step = {"char": "character", "word": "word"}.get(part.get("tokenizer"), "token")
        return f"{name} ({part['cell'].upper()} {part['gate']}, a step = a {step})"

    def figure_title(self, state: ViewState) -> str:
        gates = {p["gate"] for p in self.result.extra["per_model"].values()}
        kind = {frozenset("f"): "forget gate f̄", frozenset("z"): "update gate z̄"}.get(
            frozenset(gates), "keep gate f̄ / z̄"
        )
        return f"Unit time constants from the mean {kind}: {', '.join(self.result.model_names())}"
