"""The attention panel's heatmap: a full-resolution matrix, or a max-pooled overview drawn at the
scale of the steps, with an exact full-resolution tile over the part a zoom shows.

`PooledHeatmap` is a Heatmap whose cells may each cover `cell` x `cell` steps (the image is scaled,
so axes, view ranges, the outlined row and clicks stay in steps); hover and click report the step
under the mouse, and the value shown is the exact one (`value_fn`, one row of the trace), not the
block's maximum. `TileImage` draws exact rows over a rectangle of steps; window boundaries are thin
lines across the matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QImage, QTransform

from memviz.panels.heatmap import Heatmap
from memviz.panels.heatmap_image import CellImage, colour, native_lookup_table


class ClippedCellImage(CellImage):
    """A CellImage that paints nothing past `limit` (item units): a pooled last block may overhang
    the last query, and must not look like attention of queries that are not there yet."""

    limit: tuple[float, float] | None = None

    def paint(self, painter, *args) -> None:
        if self.limit is not None:
            # intersect: the view box's own clip (its edges) stays
            painter.setClipRect(QRectF(0, 0, self.limit[1], self.limit[0]), Qt.ClipOperation.IntersectClip)
        super().paint(painter, *args)


class TileImage(pg.GraphicsObject):
    """Exact cells over steps [r0, r0+rows) x [c0, c0+cols), drawn above the pooled overview."""

    def __init__(self) -> None:
        super().__init__()
        self.setZValue(5)  # over the overview, under the cursor line and the outlined row
        self.pixels = np.zeros((0, 0), dtype=np.uint32)
        self.qimage: QImage | None = None
        self.rect = QRectF()
        self.shown_rows = 0  # rows drawn (a tile's rows past the current step are hidden)

    def set_pixels(self, pixels: np.ndarray, r0: int, c0: int, shown_rows: int) -> None:
        self.prepareGeometryChange()
        self.pixels = np.ascontiguousarray(pixels)
        rows, cols = self.pixels.shape
        self.qimage = QImage(
            self.pixels, cols, rows, self.pixels.strides[0], QImage.Format.Format_ARGB32_Premultiplied
        )
        self.rect = QRectF(c0, r0, cols, rows)
        self.shown_rows = max(0, min(rows, shown_rows))
        self.update()

    def set_shown_rows(self, rows: int) -> None:
        rows = max(0, min(self.pixels.shape[0], rows))
        if rows != self.shown_rows:
            self.shown_rows = rows
            self.update()

    def clear(self) -> None:
        self.prepareGeometryChange()
        self.qimage = None
        self.rect = QRectF()
        self.shown_rows = 0
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt's name
        return QRectF(self.rect)

    def paint(self, painter, *_args) -> None:
        if self.qimage is None or not self.shown_rows:
            return
        cols = self.pixels.shape[1]
        target = QRectF(self.rect.x(), self.rect.y(), cols, self.shown_rows)
        painter.drawImage(target, self.qimage, QRectF(0, 0, cols, self.shown_rows))


class PooledHeatmap(Heatmap):
    """A Heatmap whose data cells may each stand for `cell` x `cell` steps of a `steps` x `steps`
    matrix; positions, hovers and clicks are in steps."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.plot.removeItem(self.image)
        self.image = ClippedCellImage(self)
        self.plot.addItem(self.image)
        self.cell = 1
        self.steps = self.frame = 0
        self.value_fn: Callable[[int, int], float] | None = None  # the exact value of (query, key)
        self.tile = TileImage()
        self.plot.addItem(self.tile, ignoreBounds=True)
        self.boundary_lines: list[pg.InfiniteLine] = []
        self._boundaries: tuple[int, ...] = ()

    def set_pooling(self, cell: int, steps: int, frame: int | None = None) -> None:
        """Data cells cover `cell` steps a side; the matrix shown is `steps` x `steps`; a pooled view
        frames `frame` steps (the whole run: scrubbing then moves no axis, whose layout costs ~10 ms)."""
        if cell != self.cell:
            self.cell = cell
            self.image.setTransform(QTransform.fromScale(cell, cell))
        self.steps = steps
        self.frame = max(steps, frame or steps)
        self.image.limit = (steps / cell, steps / cell) if cell > 1 else None

    def data_extent(self) -> tuple[int, int]:
        if self.cell > 1:
            return (self.frame, self.frame)
        return super().data_extent()

    def cell_at_item(self, pos: QPointF) -> tuple[int, int] | None:
        row, col = int(math.floor(pos.y() * self.cell)), int(math.floor(pos.x() * self.cell))
        rows, cols = (self.steps, self.steps) if self.cell > 1 else super().data_extent()
        if not (0 <= row < rows and 0 <= col < cols):
            return None
        return row, col

    def scene_pos_of(self, row: int, col: int) -> QPointF:
        return self.image.mapToScene(QPointF((col + 0.5) / self.cell, (row + 0.5) / self.cell))

    def value_at(self, row: int, col: int) -> float:
        if self.cell == 1 or self.value_fn is None:
            return float(self.data[row, col])
        return float(self.value_fn(row, col))

    def tooltip_at(self, row: int, col: int) -> str:
        value = self.value_at(row, col)
        if self.tooltip_fn is not None:
            return self.tooltip_fn(row, col, value)
        return f"row {row}, col {col}: {self.value_name} = {value:.4f}"

    # -- the zoomed tile ---------------------------------------------------------------------
    def show_tile(self, values: np.ndarray, r0: int, c0: int, shown_rows: int) -> None:
        lut = native_lookup_table(self.cmap_name)
        self.tile.set_pixels(colour(values, self.levels, lut), r0, c0, shown_rows)

    def visible_steps(self) -> tuple[int, int, int, int]:
        """(r0, r1, c0, c1): the steps the view shows, within the matrix."""
        (x0, x1), (y0, y1) = self.plot.getViewBox().viewRange()
        n = self.steps if self.cell > 1 else self.data_extent()[0]
        r0, r1 = max(0, math.floor(y0)), min(n, math.ceil(y1))
        c0, c1 = max(0, math.floor(x0)), min(n, math.ceil(x1))
        return r0, max(r0, r1), c0, max(c0, c1)

    # -- sliding windows ---------------------------------------------------------------------
    def set_boundaries(self, steps: Sequence[int], pen) -> None:
        """A thin line across the matrix at each step where a new window starts (row and column)."""
        steps = tuple(int(s) for s in steps)
        if steps == self._boundaries and len(self.boundary_lines) == 2 * len(steps):
            return
        for line in self.boundary_lines:
            self.plot.removeItem(line)
        self.boundary_lines = []
        for s in steps:
            for angle in (0, 90):
                line = pg.InfiniteLine(pos=s, angle=angle, movable=False, pen=pen)
                line.setZValue(8)
                self.plot.addItem(line, ignoreBounds=True)
                self.boundary_lines.append(line)
        self._boundaries = steps

    def restyle_boundaries(self, pen) -> None:
        for line in self.boundary_lines:
            line.setPen(pen)
