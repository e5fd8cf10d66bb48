"""The `knn` experiment's figure: bits per character of the held-out text against λ, one curve per
k (and per model), the best (k, λ) starred and labelled; beside it, how the per-token gain in log p
is spread at that best setting (most tokens lose a little, those the memory knows gain much)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

from memviz.core.view import ViewState
from memviz.experiments.result import ExperimentResult
from memviz.export.experiment_figure import ExperimentFigure, model_colour

K_SYMBOLS = ("o", "s", "t", "d", "h", "p", "+", "x")


class KnnFigure(ExperimentFigure):
    name = "knn"
    title = "kNN-LM"

    def draw(self, result: ExperimentResult) -> None:
        """One model: a curve per k, its legend bottom left (the curves start high at λ = 0).
        Several: each model's best k solid in its colour, the other k thin and dashed, one legend
        entry per model with its best."""
        names = result.model_names()
        ks = [int(k) for k in result.extra["ks"]]
        several = len(names) > 1
        curves = self.add_plot(row=0, col=0, x_label="λ (weight of the memory)", y_label="bits per character")
        gains = self.add_plot(row=0, col=1, x_label="gain log₂ p − log₂ p_LM (bits)", y_label="tokens")
        # a U-shaped curve is high at both ends: one model's legend goes bottom left, several models'
        # at the top, in from the left
        self.add_legend(curves, offset=(70, 10) if several else (10, -10))
        self.canvas.ci.layout.setColumnStretchFactor(0, 1 if several else 3)
        self.canvas.ci.layout.setColumnStretchFactor(1, 1 if several else 2)
        for m, name in enumerate(names):
            part = result.extra["per_model"][name]
            best = part["best"]
            for i, k in enumerate(ks):
                lam = [r["lambda"] for r in result.rows if r["model"] == name and r["k"] == k]
                bpc = [r["bits_per_char"] for r in result.rows if r["model"] == name and r["k"] == k]
                if not several:
                    self.curve(curves, lam, bpc, name=f"k = {k}", colour=model_colour(i), symbol=K_SYMBOLS[i])
                elif k == best["k"]:
                    self.curve(
                        curves,
                        lam,
                        bpc,
                        colour=model_colour(m),
                        symbol=K_SYMBOLS[i % len(K_SYMBOLS)],
                        name=f"{name}: {part['bits_per_char_alone']:.3f} → {best['bits_per_char']:.3f} "
                        f"(k = {best['k']}, λ = {best['lambda']:g})",
                    )
                else:
                    pen = pg.mkPen(model_colour(m), width=1.2, style=Qt.PenStyle.DashLine)
                    curves.plot(lam, bpc, pen=pen, connect="finite")
            star = pg.ScatterPlotItem([best["lambda"]], [best["bits_per_char"]], symbol="star", size=24)
            star.setBrush(pg.mkBrush(model_colour(m)))  # one model: the theme's foreground (apply_theme)
            curves.addItem(star)
            self.stars.append((star, None if several else "foreground"))
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
            )
        if several:
            others = ", ".join(str(k) for k in ks)
            curves.setTitle(f"solid: each model's best k (★ best λ); dashed: k = {others}")
            gains.setTitle("per token, at each model's best λ and k")
        else:
            part = result.extra["per_model"][names[0]]
            best = part["best"]
            curves.setTitle(
                f"best λ = {best['lambda']:g}, k = {best['k']}: {best['bits_per_char']:.3f} bits/char "
                f"({part['bits_per_char_alone']:.3f} alone)"
            )
            gains.setTitle(f"per token: {part['helped_tokens']:,} of {part['tokens']:,} gain")
        self.reference_line(gains, 0.0, horizontal=False)

    def __init__(self, view, result: ExperimentResult, parent=None) -> None:
        self.stars: list[tuple[pg.ScatterPlotItem, str | None]] = []
        super().__init__(view, result, parent)

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        foreground = state.theme_obj.foreground
        for star, fill in self.stars:
            star.setPen(pg.mkPen(foreground, width=1))
            if fill == "foreground":
                star.setBrush(pg.mkBrush(foreground))

    def figure_title(self, state: ViewState) -> str:
        per_model = self.result.extra["per_model"]
        if len(per_model) > 1:
            return f"kNN-LM, p = λ p_kNN + (1 − λ) p_LM: {', '.join(self.result.model_names())}"
        stores = ", ".join(
            f"{n} + {p['store_entries']:,} memories" for n, p in self.result.extra["per_model"].items()
        )
        return f"kNN-LM: p = λ p_kNN + (1 − λ) p_LM ({stores})"
