"""A heatmap's cells as pixels: the colormap's table in QImage's native format, the colouring of
values over levels, and `CellImage`, the persistent colour buffer a heatmap draws. Split out of
heatmap.py (issue 14)."""

from __future__ import annotations

import sys
from functools import cache
from typing import Protocol

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QToolTip

from memviz.panels import colormaps


class CellOwner(Protocol):
    """What CellImage tells of hovers and clicks: its Heatmap."""

    clicked: object  # Signal(int, int)
    last_tooltip: str

    def cell_at_item(self, pos: QPointF) -> tuple[int, int] | None: ...

    def tooltip_at(self, row: int, col: int) -> str: ...

    def follow_data(self) -> None: ...


@cache
def native_lookup_table(name: str) -> np.ndarray:
    """The colormap's table as QImage's native pixels (ARGB32 premultiplied, one uint32 each):
    drawing any other format converts the whole image at every paint."""
    rgba = colormaps.lookup_table(name).astype(np.uint16)
    alpha = rgba[:, 3:4]
    native = np.concatenate([rgba[:, 2::-1] * alpha // 255, alpha], axis=1).astype(np.uint8)
    if sys.byteorder != "little":  # 0xAARRGGBB as a 32-bit word: A, R, G, B in memory
        native = native[:, ::-1]
    words = np.ascontiguousarray(native).view(np.uint32).ravel()
    words.setflags(write=False)
    return words


def colour(values: np.ndarray, levels: tuple[float, float], lut: np.ndarray) -> np.ndarray:
    """Pixels (one `lut` entry each) of `values`, mapped as pyqtgraph's ImageItem maps them (linear
    over `levels`, clipped); NaN is transparent (0). Vectorised in float32 with one gather: this runs
    over every cell whenever a whole image changes (an LSTM's retention: 512 x 1024 cells a step)."""
    lo, hi = levels
    n = len(lut)
    index = np.subtract(values, np.float32(lo), dtype=np.float32)
    index *= np.float32(n / (hi - lo) if hi > lo else 0.0)
    nan = np.isnan(index) if index.size and np.isnan(index.min()) else None
    if nan is not None:
        index[nan] = 0
    np.clip(index, 0, n - 1, out=index)
    pixels = lut[index.astype(np.uint16 if n <= 65536 else np.intp)]
    if nan is not None:
        pixels[nan] = 0
    return pixels


class CellImage(pg.GraphicsObject):
    """The heatmap's cells: a persistent colour buffer drawn through a QImage over the same memory.

    A new step colours only its new cells, and a paint copies nothing: at T = 1024 re-colouring the
    whole T x T image every step (pyqtgraph's ImageItem) cost several milliseconds per panel.
    Reports hovers and clicks (in cell coordinates) to its Heatmap.
    """

    def __init__(self, owner: CellOwner) -> None:
        super().__init__()
        self.owner = owner
        self.setAcceptHoverEvents(True)
        self.buffer = np.zeros((0, 0), dtype=np.uint32)  # ARGB32 premultiplied pixels
        self.qimage: QImage | None = None
        self.cells = (0, 0)  # rows, cols shown (not `shape`: that is QGraphicsItem's hit-test method)

    def reserve(self, rows: int, cols: int) -> None:
        """Room for rows x cols cells (capacity doubles; what is coloured is kept)."""
        have_r, have_c = self.buffer.shape
        if rows <= have_r and cols <= have_c:
            return
        # powers of two: a long run reallocates (and copies) a handful of times, not at every size
        new_r = max(have_r, 1 << max(rows - 1, 15).bit_length())
        new_c = max(have_c, 1 << max(cols - 1, 15).bit_length())
        grown = np.zeros((new_r, new_c), dtype=np.uint32)
        grown[:have_r, :have_c] = self.buffer
        self.buffer = grown
        # PySide6 wraps the array's own memory (no copy): later colouring shows without a new QImage
        self.qimage = QImage(grown, new_c, new_r, grown.strides[0], QImage.Format.Format_ARGB32_Premultiplied)

    def show_cells(self, rows: int, cols: int, changed: tuple[int, int] | None = None) -> None:
        """Show rows x cols cells. `changed` = (r, c): only rows from r and columns from c were
        coloured again (a subclass may repaint just those; this one repaints all)."""
        if (rows, cols) != self.cells:
            self.prepareGeometryChange()
            self.cells = (rows, cols)
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt's name
        return QRectF(0, 0, self.cells[1], self.cells[0])

    def paint(self, painter, *_args) -> None:
        rows, cols = self.cells
        if rows and cols and self.qimage is not None:
            area = QRectF(0, 0, cols, rows)
            painter.drawImage(area, self.qimage, area)

    def hoverEvent(self, ev):  # noqa: N802
        if ev.isExit():
            QToolTip.hideText()
            return
        cell = self.owner.cell_at_item(ev.pos())
        if cell is None:
            QToolTip.hideText()
            return
        text = self.owner.tooltip_at(*cell)
        self.owner.last_tooltip = text
        QToolTip.showText(ev.screenPos().toPoint(), text)

    def mouseClickEvent(self, ev):  # noqa: N802
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        if ev.double():
            ev.accept()
            self.owner.follow_data()
            return
        cell = self.owner.cell_at_item(ev.pos())
        if cell is not None:
            ev.accept()
            self.owner.clicked.emit(*cell)
