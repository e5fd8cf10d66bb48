"""The `knn` experiment's figure: bits per character of the held-out text against λ, one curve per
k (and per model), the best (k, λ) starred and labelled; beside it, how the per-token gain in log p
is spread at that best setting (most tokens lose a little, those the memory knows gain much)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from memviz.core.view import ViewState
from memviz.experiments.result import ExperimentResult
from memviz.export.experiment_figure import ExperimentFigure, model_colour

K_SYMBOLS = ("o", "s", "t", "d", "h", "p", "+", "x")


class KnnFigure(ExperimentFigure):
    name = "knn"
    title = "kNN-LM"

    def draw(self, result: ExperimentResult) -> None:
        names = result.model_names()
        ks = [int(k) for k in result.extra["ks"]]
        several = len(names) > 1
        curves = self.add_plot(row=0, col=0, x_label="λ (weight of the memory)", y_label="bits per character")
        legend = self.add_legend(curves, offset=(10, -10))  # bottom left: the curves start high at λ = 0
        gains = self.add_plot(row=0, col=1, x_label="gain log₂ p − log₂ p_LM (bits)", y_label="tokens")
        self.canvas.ci.layout.setColumnStretchFactor(0, 3)
        self.canvas.ci.layout.setColumnStretchFactor(1, 2)
        for m, name in enumerate(names):
            part = result.extra["per_model"][name]
            for i, k in enumerate(ks):
                lam = [r["lambda"] for r in result.rows if r["model"] == name and r["k"] == k]
                bpc = [r["bits_per_char"] for r in result.rows if r["model"] == name and r["k"] == k]
                colour = model_colour(m if several else i)
                label = f"{name}, k = {k}" if several else f"k = {k}"
                self.curve(curves, lam, bpc, name=label, colour=colour, symbol=K_SYMBOLS[i % len(K_SYMBOLS)])
            best = part["best"]
            star = pg.ScatterPlotItem(
                [best["lambda"]],
                [best["bits_per_char"]],
                symbol="star",
                size=24,
                brush=pg.mkBrush(model_colour(m) if several else "#111111"),
                pen=pg.mkPen("#111111", width=1),
            )
            curves.addItem(star)
            summary = (
                f"best λ = {best['lambda']:g}, k = {best['k']}: {best['bits_per_char']:.3f} bits/char "
                f"({part['bits_per_char_alone']:.3f} alone)"
            )
            if several:
                legend.addItem(star, f"{name} {summary}")
            else:
                curves.setTitle(summary)
            edges = np.asarray(part["gain_edges"], dtype=float)
            counts = np.asarray(part["gain_counts"], dtype=float)
            fill = pg.mkColor(model_colour(m))
            fill.setAlpha(90 if several else 150)
            gains.plot(
                edges,
                counts,
                stepMode="center",
                fillLevel=0,
                brush=pg.mkBrush(fill),
                pen=pg.mkPen(model_colour(m), width=2),
                name=name,
            )
        if several:
            curves.setTitle("held-out text (★ each model's best)")
            gains.setTitle("per token, at each model's best λ and k")
        else:
            part = result.extra["per_model"][names[0]]
            gains.setTitle(f"per token: {part['helped_tokens']:,} of {part['tokens']:,} gain")
        self.reference_line(gains, 0.0, horizontal=False)

    def figure_title(self, state: ViewState) -> str:
        stores = ", ".join(
            f"{n} + {p['store_entries']:,} memories" for n, p in self.result.extra["per_model"].items()
        )
        return f"kNN-LM: p = λ p_kNN + (1 − λ) p_LM ({stores})"
