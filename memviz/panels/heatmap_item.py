"""A reusable, fast pyqtgraph heatmap.

`Heatmap` is a graphics layout item (so several fit in one canvas): a PlotItem holding the cells
(heatmap_image.CellImage) drawn with fixed levels and a lookup table (no autoLevels: a render costs
about a millisecond for a 1024 x 1024 image), a ColorBarItem beside it, a cursor line at the current
step, an outlined row (the current query, the selected unit), hover tooltips with the exact value
and the token text, and a `clicked(row, col)` signal.

The image holds the data exactly as given (`Heatmap.data`): the trace's own numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, QTimer, Signal
from PySide6.QtGui import QPen
from PySide6.QtWidgets import QGraphicsRectItem, QWidget

from memviz.core.view import THEMES, Theme
from memviz.panels import colormaps
from memviz.panels.heatmap_image import CellImage, colour, native_lookup_table
from memviz.panels.pixmap_axis import TokenAxis, fit_ticks, pixmap_axes
from memviz.panels.plot_labels import fit_label
from memviz.panels.plot_style import MIN_VIEW, style_axis, style_plot
from memviz.panels.scales import ColourScale


def stable_extent(n: int) -> int:
    """How far a growing axis shows: n rounded up to a quarter of its power of two (exact up to 64).

    The view then changes every few dozen steps instead of at every step, so playback neither
    re-lays out the axes each frame (their text costs milliseconds) nor makes the picture jitter.
    """
    if n <= 64:
        return max(n, 1)
    quantum = 1 << (n.bit_length() - 3)
    return -(-n // quantum) * quantum


class Heatmap(pg.GraphicsLayout):
    """One heatmap with its colour bar: rows x cols, cell (r, c) drawn over [c, c+1] x [r, r+1].

    The view follows the data until the user zooms or pans; a double click follows again. While
    steps come quickly (a run) a growing axis is shown to `stable_extent`, so the axes are laid out
    again every few dozen steps, not at every step; once no step has come for SETTLE_MS (the run
    ended, or was paused) the view ends exactly at the data.

    Its colour levels follow the view's colour scale (`scale`, a ColourScale: stable, fixed, step).
    """

    SETTLE_MS = 400  # a gap between two drawings longer than this: the run is settled

    clicked = Signal(int, int)  # row, col

    def __init__(
        self,
        cmap: str = colormaps.SEQUENTIAL,
        levels: tuple[float, float] = (0.0, 1.0),
        x_label: str = "",
        y_label: str = "",
        title: str = "",
        invert_y: bool = False,
        x_tokens: bool = False,
        y_tokens: bool = False,
        value_name: str = "value",
        grows: tuple[bool, bool] = (False, False),
    ) -> None:
        super().__init__()
        axes = {}
        if x_tokens:
            axes["bottom"] = TokenAxis("bottom")
        if y_tokens:
            axes["left"] = TokenAxis("left")
        self.plot: pg.PlotItem = self.addPlot(
            row=0, col=0, axisItems=pixmap_axes(**axes), title=title or None
        )
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        fit_label(self.plot.titleLabel)
        self.plot.setLabel("bottom", x_label)
        self.plot.setLabel("left", y_label)
        vb = self.plot.getViewBox()
        vb.setMinimumSize(*MIN_VIEW)
        vb.setDefaultPadding(0.0)
        vb.invertY(invert_y)
        vb.disableAutoRange()
        vb.sigRangeChangedManually.connect(self._user_moved)
        self.grows = grows  # (rows, cols): which of them grow as a run goes on
        self.exact_fit = False  # True: the view always ends at the data (still figures)
        self.settles = True  # False: a growing axis keeps its stable extent (an animation's frames)
        self._last_drawn = -math.inf  # time.monotonic() of the last set_data
        self._settle_timer = QTimer()
        self._settle_timer.setSingleShot(True)
        self._settle_timer.setInterval(self.SETTLE_MS)
        self._settle_timer.timeout.connect(self.settle)
        self.following = True
        self._extent = (0, 0)
        self.image = CellImage(self)
        self.plot.addItem(self.image)
        self.cmap_name = cmap
        self.levels = tuple(float(v) for v in levels)
        self.scale = ColourScale(self.levels, value_name)
        self.colorbar = pg.ColorBarItem(
            values=self.levels, colorMap=colormaps.colormap(cmap), interactive=False, width=12
        )
        self.addItem(self.colorbar, row=0, col=1)
        fit_ticks(self.colorbar.axis)
        self.cursor_line = pg.InfiniteLine(angle=90, movable=False)
        self.cursor_line.setZValue(10)
        self.cursor_line.hide()
        self.plot.addItem(self.cursor_line, ignoreBounds=True)
        self.row_box = QGraphicsRectItem()
        self.row_box.setZValue(11)
        self.row_box.hide()
        self.plot.addItem(self.row_box, ignoreBounds=True)
        self.data: np.ndarray = np.zeros((0, 0), dtype=np.float32)
        self._coloured_levels: tuple[float, float] | None = None
        self.value_name = value_name
        self.tooltip_fn: Callable[[int, int, float], str] | None = None
        self.last_tooltip = ""
        self.highlight_row: int | None = None
        self.cursor_col: int | None = None
        self._accent = THEMES["dark"].accent

    # -- data -------------------------------------------------------------------------------
    def set_data(
        self, data: np.ndarray, levels: tuple[float, float] | None = None, keep: tuple[int, int] | None = None
    ) -> None:
        """Show `data` (rows x cols) as is. `levels`: the range the panel asks for at this step (None:
        the levels it was built with); the colour scale decides what is used (`ColourScale.levels`).

        `keep` = (r, c) promises that data[:r, :c] equals the previous data[:r, :c], so only the other
        cells are coloured again (a new step of a growing matrix costs one row and column).
        """
        self._follow_difference()
        asked = None if levels is None else (float(levels[0]), float(levels[1]))
        levels = self.scale.levels(asked, data)
        if levels is not None and levels != self.levels:
            self._set_levels(*levels)  # the colouring below sees the new levels and redoes every cell
        rows, cols = data.shape if data.ndim == 2 else (0, 0)
        old_rows, old_cols = self.data.shape if self.data.ndim == 2 else (0, 0)
        self.data = data
        if data.size == 0:
            self.image.show_cells(0, 0)
            return
        self.image.reserve(rows, cols)
        lut = native_lookup_table(self.cmap_name)
        buffer = self.image.buffer
        changed = None
        if keep is None or self._coloured_levels != self.levels:
            buffer[:rows, :cols] = colour(data, self.levels, lut)
        else:
            kr, kc = min(keep[0], rows, old_rows), min(keep[1], cols, old_cols)
            if kr < rows:
                buffer[kr:rows, :cols] = colour(data[kr:rows], self.levels, lut)
            if kc < cols and kr:
                buffer[:kr, kc:cols] = colour(data[:kr, kc:cols], self.levels, lut)
            changed = (kr, kc)
        self._coloured_levels = self.levels
        self.image.show_cells(rows, cols, changed)
        if self.highlight_row is not None:
            self._place_row_box()
        if self.following:
            self._follow()

    def _follow_difference(self) -> None:
        """A difference of two runs (B - A) is coloured with the diverging map, whatever the panel
        built the heatmap with; back to its own map for a run."""
        if self.scale.difference and self.cmap_name != colormaps.DIVERGING:
            self._own_cmap = self.cmap_name
            self._set_cmap(colormaps.DIVERGING)
        elif not self.scale.difference and getattr(self, "_own_cmap", None):
            self._set_cmap(self._own_cmap)
            self._own_cmap = None

    def _set_cmap(self, name: str) -> None:
        self.cmap_name = name
        self.colorbar.setColorMap(colormaps.colormap(name))
        self._coloured_levels = None  # every cell coloured again

    def data_extent(self) -> tuple[int, int]:
        """(rows, cols) the data covers in view units: its shape (a subclass drawing each cell over
        several units, as the attention panel's max-pooled overview, says more)."""
        return self.data.shape if self.data.ndim == 2 else (0, 0)

    def _follow(self) -> None:
        rows, cols = self.data_extent()
        now = time.monotonic()
        running = not self.settles or now - self._last_drawn < self.SETTLE_MS / 1000
        self._last_drawn = now
        stable = not self.exact_fit and running
        extent = (
            stable_extent(rows) if stable and self.grows[0] else rows,
            stable_extent(cols) if stable and self.grows[1] else cols,
        )
        if extent != (rows, cols) and self.settles:
            self._settle_timer.start()  # the view ends at the data once no step comes for a while
        self._show_extent(extent)

    def _show_extent(self, extent: tuple[int, int]) -> None:
        if extent != self._extent and extent[0] and extent[1]:
            self._extent = extent
            self.plot.getViewBox().setRange(xRange=(0, extent[1]), yRange=(0, extent[0]), padding=0.0)

    def settle(self) -> None:
        """The run is settled: the view ends exactly at the data (when it follows the data)."""
        self._settle_timer.stop()
        if self.following and self.data.ndim == 2:
            self._show_extent(self.data_extent())

    @property
    def view_extent(self) -> tuple[float, float]:
        """(rows, cols) the view shows: the ends of its y and x ranges."""
        (_x0, x1), (_y0, y1) = self.plot.getViewBox().viewRange()
        return (y1, x1)

    def follow_data(self) -> None:
        """Show the whole data again (after a zoom or a pan)."""
        self.following = True
        self._extent = (0, 0)
        self._follow()

    def _user_moved(self, *_args) -> None:
        self.following = False

    def set_levels(self, lo: float, hi: float) -> None:
        self._set_levels(lo, hi)
        if self.data.size:
            self.set_data(self.data)

    def _set_levels(self, lo: float, hi: float) -> None:
        self.levels = (float(lo), float(hi))
        self.colorbar.setLevels(values=self.levels)

    def set_cursor_col(self, col: int | None) -> None:
        self.cursor_col = col
        if col is None:
            self.cursor_line.hide()
        else:
            self.cursor_line.setPos(col + 0.5)
            self.cursor_line.show()

    def set_highlight_row(self, row: int | None) -> None:
        self.highlight_row = row
        if row is None:
            self.row_box.hide()
        else:
            self._place_row_box()
            self.row_box.show()

    def set_highlight_cell(self, cell: tuple[int, int] | None) -> None:
        """Outline one cell (row, col) instead of a whole row."""
        self.highlight_row = None
        if cell is None:
            self.row_box.hide()
        else:
            self.row_box.setRect(QRectF(cell[1], cell[0], 1, 1))
            self.row_box.show()

    def _place_row_box(self) -> None:
        width = self.data_extent()[1]
        self.row_box.setRect(QRectF(0, self.highlight_row, max(width, 1), 1))

    def set_axis_tokens(self, tokens: Sequence[str]) -> None:
        for name in ("bottom", "left"):
            axis = self.plot.getAxis(name)
            if isinstance(axis, TokenAxis):
                axis.set_tokens(tokens)

    # -- hover and click --------------------------------------------------------------------
    def cell_at_item(self, pos: QPointF) -> tuple[int, int] | None:
        row, col = int(math.floor(pos.y())), int(math.floor(pos.x()))
        if self.data.ndim != 2 or not (0 <= row < self.data.shape[0] and 0 <= col < self.data.shape[1]):
            return None
        return row, col

    def cell_at_scene(self, scene_pos: QPointF) -> tuple[int, int] | None:
        return self.cell_at_item(self.image.mapFromScene(scene_pos))

    def scene_pos_of(self, row: int, col: int) -> QPointF:
        """The scene point at the centre of a cell (for tests and tools)."""
        return self.image.mapToScene(QPointF(col + 0.5, row + 0.5))

    def value_at(self, row: int, col: int) -> float:
        """The exact value at a cell the hover names (a pooled subclass: not the pooled cell's)."""
        return float(self.data[row, col])

    def tooltip_at(self, row: int, col: int) -> str:
        value = self.value_at(row, col)
        if self.tooltip_fn is not None:
            return self.tooltip_fn(row, col, value)
        return f"row {row}, col {col}: {self.value_name} = {value:.4f}"

    # -- look -------------------------------------------------------------------------------
    def apply_theme(self, theme: Theme) -> None:
        self._accent = theme.accent
        width = 2 if theme.name == "talk" else 1.5
        self.cursor_line.setPen(pg.mkPen(theme.accent, width=width))
        pen = QPen(pg.mkColor(theme.accent))
        pen.setWidthF(width)
        pen.setCosmetic(True)
        self.row_box.setPen(pen)
        style_plot(self.plot, theme)
        style_axis(self.colorbar.axis, theme)


def heatmaps_of(panel: QWidget) -> list[Heatmap]:
    """The Heatmaps a panel holds (as attributes, or in a list or dict attribute)."""
    found = []
    for value in vars(panel).values():
        values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        found += [v for v in values if isinstance(v, Heatmap)]
    return found
