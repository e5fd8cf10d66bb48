"""The look of the panels' plots: the theme's font, pens and title on axes and plots, the least room
a plot's cells get, and a static plot (rank and layer lists). Split out of heatmap.py (issue 14)."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QFont

from memviz.core.view import Theme
from memviz.panels.pixmap_axis import pixmap_axes
from memviz.panels.plot_labels import fit_label

MIN_VIEW = (48, 36)  # pixels: the least a heatmap's or a list's cells get (the rest gives way first)


def add_static_plot(layout: pg.GraphicsLayout) -> pg.PlotItem:
    """A plot with rows top-down that the mouse neither pans nor zooms (rank and layer lists)."""
    plot = layout.addPlot(axisItems=pixmap_axes())
    plot.setMenuEnabled(False)
    plot.hideButtons()
    fit_label(plot.titleLabel)
    plot.getViewBox().setMinimumSize(*MIN_VIEW)
    plot.setMouseEnabled(False, False)
    plot.getViewBox().invertY(True)
    return plot


def theme_font(theme: Theme, delta: int = 0) -> QFont:
    font = QFont()
    font.setPointSize(max(6, theme.font_size + delta))
    return font


def style_axis(axis: pg.AxisItem, theme: Theme) -> None:
    axis.setPen(pg.mkPen(theme.foreground))
    axis.setTextPen(pg.mkPen(theme.foreground))
    axis.setStyle(tickFont=theme_font(theme, -1))
    if axis.label is not None:
        axis.label.setFont(theme_font(theme))
        axis.labelStyle = {"color": theme.foreground}
        axis._updateLabel()


def style_plot(plot: pg.PlotItem, theme: Theme) -> None:
    fit_label(plot.titleLabel)
    for name in ("left", "bottom", "right", "top"):
        axis = plot.getAxis(name)
        style_axis(axis, theme)
    if plot.titleLabel is not None and plot.titleLabel.text:
        plot.setTitle(plot.titleLabel.text, color=theme.foreground, size=f"{theme.font_size}pt")
