"""The base of the experiments' figures, and their files: figure.svg, .pdf and .png in the folder.

An experiment's figure is a GraphicsPanel drawn by FigureRenderer like `memviz compare`'s, so it
follows the themes ("talk" for slides by default), writes SVG, PDF and PNG the same way, and a PNG
at scale 2 is the scale-1 figure laid out again with twice the pixels. It draws once, from an
ExperimentResult (no trace): a subclass builds its plots in `draw` and says what it shows in
`figure_title`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from memviz.core.view import ViewState
from memviz.errors import MemvizError
from memviz.experiments.result import ExperimentResult
from memviz.panels.graphics_panel import GraphicsPanel
from memviz.panels.plot_style import style_plot
from memviz.panels.view_model import ViewModel

# one colour per model, in --model order (Tableau 10: tells apart on a projector and in print)
MODEL_COLOURS = ("#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#9c755f")
FIGURE_FORMATS = ("svg", "pdf", "png")
DEFAULT_FIGURE_SIZE = (1280, 720)


def model_colour(index: int) -> str:
    return MODEL_COLOURS[index % len(MODEL_COLOURS)]


class ExperimentFigure(GraphicsPanel):
    """One experiment's figure; subclasses define `draw(result)` and `figure_title(state)`."""

    name = "experiment"
    title = "experiment"

    def __init__(self, view: ViewModel, result: ExperimentResult, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.result = result
        self.finish_controls()
        self.plots: list[pg.PlotItem] = []
        self.legends: list[pg.LegendItem] = []
        self.lines: list[pg.InfiniteLine] = []  # reference lines: drawn in the theme's foreground
        self.draw(result)
        self.apply_theme(view.state)

    # -- for subclasses ------------------------------------------------------------------------
    def draw(self, result: ExperimentResult) -> None:
        raise NotImplementedError

    def add_plot(
        self, row: int = 0, col: int = 0, x_label: str = "", y_label: str = "", log_x: bool = False
    ) -> pg.PlotItem:
        """A plot the mouse leaves alone, labelled, on a log x axis if asked."""
        plot = self.canvas.ci.addPlot(row=row, col=col)
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.setMouseEnabled(False, False)
        for axis in ("left", "bottom"):
            plot.getAxis(axis).enableAutoSIPrefix(False)
        if x_label:
            plot.setLabel("bottom", x_label)
        if y_label:
            plot.setLabel("left", y_label)
        if log_x:
            plot.setLogMode(x=True, y=False)
        plot.showGrid(x=True, y=True, alpha=0.15)
        self.plots.append(plot)
        return plot

    def add_legend(self, plot: pg.PlotItem, offset: tuple[int, int] = (-10, 10)) -> pg.LegendItem:
        legend = plot.addLegend(offset=offset)
        self.legends.append(legend)
        return legend

    def curve(
        self,
        plot: pg.PlotItem,
        x,
        y,
        error=None,
        name: str | None = None,
        colour: str = MODEL_COLOURS[0],
        dashed: bool = False,
        symbol: str | None = "o",
    ) -> pg.PlotDataItem:
        """A line with markers and (when `error` is given) error bars of ± error at each point.

        On a log x axis the bars sit at log10(x), where pyqtgraph draws the line.
        """
        from PySide6.QtCore import Qt

        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        style = Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine
        pen = pg.mkPen(colour, width=2.5, style=style)
        item = plot.plot(
            x,
            y,
            pen=pen,
            name=name,
            symbol=symbol,
            symbolSize=7,
            symbolBrush=pg.mkBrush(colour),
            symbolPen=pg.mkPen(colour),
            connect="finite",
        )
        if error is not None:
            err = np.nan_to_num(np.asarray(error, dtype=float), nan=0.0)
            log_x = plot.getAxis("bottom").logMode
            bars = pg.ErrorBarItem(
                x=np.log10(x) if log_x else x, y=y, height=2 * err, beam=0.0, pen=pg.mkPen(colour, width=1.5)
            )
            plot.addItem(bars)
        return item

    def log_ticks(self, plot: pg.PlotItem, values) -> None:
        """Plain numbers (1, 2, 5, 10, 20, ...) on a log x axis, not pyqtgraph's '5·10¹'."""
        values = [float(v) for v in values if v is not None and float(v) > 0]
        if not values:
            return
        lo, hi = min(values), max(values)
        ticks = []
        for power in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1):
            for step in (1, 2, 5):
                v = step * 10**power
                if lo / 1.05 <= v <= hi * 1.05:
                    ticks.append((float(np.log10(v)), f"{v:,}"))
        plot.getAxis("bottom").setTicks([ticks, []])

    def reference_line(self, plot: pg.PlotItem, value: float, horizontal: bool = True) -> None:
        line = pg.InfiniteLine(pos=value, angle=0 if horizontal else 90, movable=False)
        plot.addItem(line, ignoreBounds=True)
        self.lines.append(line)

    @classmethod
    def applies(cls, result: ExperimentResult) -> bool:
        """Whether the result has anything this figure shows (copy's heatmap: a transformer)."""
        return True

    # -- the panel contract ----------------------------------------------------------------------
    @classmethod
    def supports(cls, trace) -> bool:
        return False  # drawn by `memviz experiment` only: it shows results, not a trace

    def render(self, state: ViewState) -> None:
        pass  # everything is drawn once, at construction

    def figure_title(self, state: ViewState) -> str:
        return f"{self.title}: {', '.join(self.result.model_names())}"

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        theme = state.theme_obj
        for plot in self.plots:
            style_plot(plot, theme)
        for legend in self.legends:
            legend.setLabelTextColor(theme.foreground)
            legend.setLabelTextSize(f"{theme.font_size}pt")
            for _sample, label in legend.items:
                label.setText(label.text, color=theme.foreground, size=f"{theme.font_size}pt")
        dash = pg.mkPen(theme.foreground, width=1)
        for line in self.lines:
            line.setPen(dash)


def figure_class(path: str) -> type[ExperimentFigure]:
    """'module:Class' as registered by an experiment -> the class."""
    module_name, _, class_name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise MemvizError(f"experiment figure {path!r} not found ({exc})") from None
    return cls


def renderer_for(cls: type[ExperimentFigure], result: ExperimentResult, theme: str = "talk", size=None):
    from memviz.export.render import FigureRenderer

    def make(view):
        return cls(view, result)

    return FigureRenderer(make, None, ViewState(theme=theme), size=size or DEFAULT_FIGURE_SIZE)


def save_figures(
    figures: dict[str, str],
    result: ExperimentResult,
    out_dir: Path,
    theme: str = "talk",
    size: tuple[int, int] | None = None,
    scale: float = 1.0,
    formats: tuple[str, ...] = FIGURE_FORMATS,
) -> list[Path]:
    """Each figure (file stem -> 'module:Class') as <stem>.svg, .pdf and .png (PNG at `scale`) in
    `out_dir` (a figure with nothing to show is left out); every file written beside and renamed
    into place."""
    written = []
    for stem, path in figures.items():
        cls = figure_class(path)
        if not cls.applies(result):
            continue
        renderer = renderer_for(cls, result, theme=theme, size=size)
        try:
            for fmt in formats:
                written.append(renderer.save(Path(out_dir) / f"{stem}.{fmt}", fmt=fmt, scale=scale))
        finally:
            renderer.close()
    return written
