"""The figures of `memviz experiment copy` and `context` (ExperimentFigure subclasses): every model
on one plot, one colour each, error bars over the trials."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from memviz.core.view import ViewState
from memviz.experiments.result import ExperimentResult
from memviz.export.experiment_figure import ExperimentFigure, model_colour


def _rows_of(result: ExperimentResult, model: str) -> list[dict]:
    return [r for r in result.rows if r["model"] == model]


class CopyFigure(ExperimentFigure):
    """The loss on the second copy (solid) and the first (dashed: the baseline) against how far back
    the first copy is, on a log scale."""

    name = "copy"
    title = "copy"

    def draw(self, result: ExperimentResult) -> None:
        n = result.settings.get("n")
        plot = self.add_plot(
            x_label=f"tokens back to the first copy (n + d, n = {n})", y_label="loss (nats/token)", log_x=True
        )
        self.add_legend(plot)
        for i, name in enumerate(result.model_names()):
            rows = _rows_of(result, name)
            x = [r["lookback"] for r in rows]
            colour = model_colour(i)
            self.curve(
                plot, x, [r["loss_second"] for r in rows], [r["loss_second_sem"] for r in rows], name, colour
            )
            self.curve(
                plot,
                x,
                [r["loss_first"] for r in rows],
                None,
                f"{name}: first copy (baseline)",
                colour,
                dashed=True,
                symbol=None,
            )
        top = max([r["loss_first"] for r in result.rows] + [1.0]) * 1.08
        plot.setYRange(-0.02 * top, top, padding=0)  # a little below 0, so its tick is drawn
        self.log_ticks(plot, [r["lookback"] for r in result.rows])
        self.plot = plot

    def figure_title(self, state: ViewState) -> str:
        s = self.result.settings
        return (
            f"Copy a random sequence of {s.get('n')} tokens after a gap of d "
            f"({s.get('filler')} filler, {s.get('trials')} trials)"
        )


class InductionFigure(ExperimentFigure):
    """Each transformer's induction score per layer (rows) and head (columns), side by side."""

    name = "induction"
    title = "induction score"

    @classmethod
    def applies(cls, result: ExperimentResult) -> bool:
        return bool(result.extra.get("induction"))

    def draw(self, result: ExperimentResult) -> None:
        self.labels: list[pg.TextItem] = []
        self.images = []
        cmap = pg.colormap.get("viridis")
        found = result.extra.get("induction", {})
        for col, (name, entry) in enumerate(found.items()):
            scores = np.asarray(entry["scores"], dtype=float)  # [L, A]
            layers, heads = scores.shape
            plot = self.add_plot(row=0, col=col, x_label="head", y_label="layer")
            plot.showGrid(x=False, y=False)
            plot.setTitle(f"{name} (d = {entry['distance']})")
            image = pg.ImageItem(scores.T)  # ImageItem's first axis is x
            image.setLookupTable(cmap.getLookupTable(nPts=256))
            image.setLevels((0.0, 1.0))
            plot.addItem(image)
            plot.getViewBox().invertY(True)
            plot.setRange(xRange=(0, heads), yRange=(0, layers), padding=0)
            plot.getAxis("bottom").setTicks([[(h + 0.5, str(h)) for h in range(heads)]])
            plot.getAxis("left").setTicks([[(k + 0.5, str(k)) for k in range(layers)]])
            if layers * heads <= 64:  # the numbers too, where they fit
                for k in range(layers):
                    for h in range(heads):
                        value = scores[k, h]
                        text = pg.TextItem(
                            f"{value:.2f}", color="#ffffff" if value < 0.6 else "#000000", anchor=(0.5, 0.5)
                        )
                        text.setPos(h + 0.5, k + 0.5)
                        plot.addItem(text)
                        self.labels.append(text)
            self.images.append(image)
        bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=cmap, interactive=False, width=18)
        bar.setImageItem(self.images, insert_in=None)
        self.canvas.ci.addItem(bar, row=0, col=len(found))
        self.bar = bar

    def figure_title(self, state: ViewState) -> str:
        best = []
        for name, entry in self.result.extra.get("induction", {}).items():
            scores = np.asarray(entry["scores"], dtype=float)
            k, h = np.unravel_index(int(np.argmax(scores)), scores.shape)
            best.append(f"{name}: best head {k}.{h} = {scores[k, h]:.2f}")
        return "Induction score per head: " + ", ".join(best)

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        from memviz.panels.plot_style import style_axis

        font = state.theme_obj.font_size
        for label in getattr(self, "labels", []):
            label.setFont(_font(font - 1))
        bar = getattr(self, "bar", None)
        if bar is not None:
            style_axis(bar.getAxis("right"), state.theme_obj)


def _font(size: int):
    from PySide6.QtGui import QFont

    font = QFont()
    font.setPointSize(max(6, size))
    return font


class ContextFigure(ExperimentFigure):
    """Bits per character relative to the full context against the tokens seen (log scale), and the
    shuffled-beyond-w variant dashed."""

    name = "context"
    title = "context"

    def draw(self, result: ExperimentResult) -> None:
        plot = self.add_plot(
            x_label="W: tokens the model sees (solid), or sees in order (dashed)",
            y_label="bits/char − full context",
            log_x=True,
        )
        self.add_legend(plot)
        windows: list[int] = []
        full = {m["name"]: m.get("full_bits_per_char") for m in result.models}
        for i, name in enumerate(result.model_names()):
            colour = model_colour(i)
            rows = [r for r in _rows_of(result, name) if r["variant"] == "truncated"]
            label = f"{name} ({full[name]:.3f} bits/char in full)" if full.get(name) is not None else name
            self.curve(
                plot, [r["window"] for r in rows], [r["bpc_increase"] for r in rows], None, label, colour
            )
            windows += [r["window"] for r in rows]
            shuffled = [r for r in _rows_of(result, name) if r["variant"] == "shuffled"]
            if shuffled:
                self.curve(
                    plot,
                    [r["window"] for r in shuffled],
                    [r["bpc_increase"] for r in shuffled],
                    [r["bpc_increase_sem"] for r in shuffled],
                    f"{name}: the tokens beyond W shuffled",
                    colour,
                    dashed=True,
                    symbol="t",
                )
        self.reference_line(plot, 0.0)
        self.log_ticks(plot, windows)

    def figure_title(self, state: ViewState) -> str:
        return "Loss as the context shrinks: bits per character above the full context's"
