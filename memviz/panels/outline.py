"""A selection box seen on every colour: the accent line with a black and a white line outside it.

An accent-coloured box alone vanished on cells of its own colour (the dark look's amber on viridis'
yellow end, the talk look's red on RdBu's red end). Any colour contrasts with black or with white by
a ratio of at least sqrt(21) ~ 4.6 (WCAG), so a box with both lines shows on every cell of every
colormap in both looks; the accent says it is the selection. The lines keep their width in screen
pixels however the view is zoomed, and a row thinner than a pixel still gets the whole box.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsRectItem

from memviz.panels.heatmap_item import Heatmap

#: (colour, width in screen pixels, distance of the line's middle outside the box's edge), drawn in order
RINGS: tuple[tuple[str | None, float, float], ...] = (
    ("#ffffff", 1.0, 3.5),  # outermost: white
    ("#000000", 1.0, 2.5),
    (None, 2.0, 1.0),  # the theme's accent (the pen given), just outside the edge
)
REACH = 4.0  # pixels the box reaches beyond its rectangle


class ContrastOutline(pg.GraphicsObject):
    """A drop-in for the QGraphicsRectItem a Heatmap outlines its selection with (setRect, rect, setPen)."""

    def __init__(self) -> None:
        super().__init__()
        self._rect = QRectF()
        self._accent = QColor("#ffb000")
        self._pens: list[QPen] = []
        self._make_pens()

    def _make_pens(self) -> None:
        self._pens = []
        for colour, width, _ in RINGS:
            pen = QPen(QColor(colour) if colour else self._accent)
            pen.setWidthF(width)
            pen.setCosmetic(True)
            pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
            self._pens.append(pen)

    def colours(self) -> list[QColor]:
        """The colours of the box's lines, from the outside in."""
        return [QColor(pen.color()) for pen in self._pens]

    def setPen(self, pen: QPen) -> None:  # noqa: N802 - QGraphicsRectItem's name
        self._accent = QColor(pen.color())
        self._make_pens()
        self.update()

    def pen(self) -> QPen:
        return QPen(self._pens[-1])

    def setRect(self, rect: QRectF) -> None:  # noqa: N802
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = QRectF(rect)
        self.update()

    def rect(self) -> QRectF:
        return QRectF(self._rect)

    def viewTransformChanged(self) -> None:  # noqa: N802 - pyqtgraph's name
        self.prepareGeometryChange()  # the reach in data units follows the zoom

    def boundingRect(self) -> QRectF:  # noqa: N802
        vectors = self.pixelVectors()  # one screen pixel along x and y, in data units
        if vectors == (None, None):
            return QRectF(self._rect)
        dx = (REACH + 1) * math.hypot(vectors[0].x(), vectors[0].y())
        dy = (REACH + 1) * math.hypot(vectors[1].x(), vectors[1].y())
        return self._rect.adjusted(-dx, -dy, dx, dy)

    def paint(self, painter, *_args) -> None:
        if self._rect.isNull() and self._rect.width() == 0:
            return
        box = painter.transform().mapRect(self._rect)  # in device pixels
        painter.save()
        painter.resetTransform()
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for pen, (_, _, offset) in zip(self._pens, RINGS, strict=True):
            painter.setPen(pen)
            painter.drawRect(box.adjusted(-offset, -offset, offset, offset))
        painter.restore()


def use_contrast_outline(heatmap: Heatmap) -> ContrastOutline:
    """Give a heatmap's selection box the contrasting outline (same place, same z order, same API)."""
    old: QGraphicsRectItem = heatmap.row_box
    outline = ContrastOutline()
    outline.setZValue(old.zValue())
    outline.setVisible(old.isVisible())
    outline.setRect(old.rect())
    outline.setPen(old.pen())
    heatmap.plot.removeItem(old)
    heatmap.plot.addItem(outline, ignoreBounds=True)
    heatmap.row_box = outline
    return outline
