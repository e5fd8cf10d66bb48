"""Texts on a plot: a title that fits its width (elided, the whole text in its tooltip), and
`Labels`, many short texts at data positions drawn in one paint. Split out of heatmap.py (issue 14)."""

from __future__ import annotations

import html
import math
import re

import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QFont, QFontMetricsF, QPen
from PySide6.QtWidgets import QGraphicsObject

from memviz.panels.static_texts import StaticTexts


def fit_label(label: pg.LabelItem) -> None:
    """Make a LabelItem (a plot's title) fit its width instead of widening its plot past a narrow
    dock: its minimum width is 0, and a text wider than the label is elided, the whole text in its
    tooltip. The text is elided when the label is resized or its text set, never at a paint."""
    if getattr(label, "_fits", False):
        return
    label._fits = True
    item_class = type(label)
    hints = Qt.SizeHint

    def update_min() -> None:
        bounds = label.itemRect()
        label.setMinimumWidth(0)
        label.setMinimumHeight(bounds.height())
        label._sizeHint = {
            hints.MinimumSize: (0, bounds.height()),
            hints.PreferredSize: (bounds.width(), bounds.height()),
            hints.MaximumSize: (-1, -1),
            hints.MinimumDescent: (0, 0),
        }
        label.updateGeometry()

    def resize_event(event) -> None:
        elide_label(label)
        item_class.resizeEvent(label, event)

    label.updateMin = update_min
    label.resizeEvent = resize_event


def elide_label(label: pg.LabelItem) -> None:
    """Show as much of the label's text as fits its width (`fit_label`)."""
    full = label.text or ""
    width = label.rect().width()
    if not full or width <= 0:
        return
    plain = html.unescape(re.sub(r"<[^>]*>", "", full))
    font = QFont(label.item.font())
    size = str(label.opts.get("size", ""))
    if size.endswith("pt"):
        font.setPointSizeF(float(size[:-2]))
    if label.opts.get("bold"):
        font.setBold(True)
    room = width - 6  # QGraphicsTextItem's document margins
    shown = QFontMetricsF(font).elidedText(plain, Qt.TextElideMode.ElideRight, room)
    tip = plain if shown != plain else ""
    if label.toolTip() != tip:
        label.setToolTip(tip)
    current = label.item.toPlainText()
    if shown == current:
        return
    if shown == plain:
        item_class = type(label)
        item_class.setText(label, full)  # the whole text (as HTML, with its look) fits again
        return
    colour = pg.mkColor(label.opts.get("color") or pg.getConfigOption("foreground"))
    style = f"color: {colour.name()}" + (f"; font-size: {size}" if size else "")
    style += "; font-weight: bold" if label.opts.get("bold") else ""
    label.item.setHtml(f"<span style='{style}'>{html.escape(shown, quote=False)}</span>")


class Labels(QGraphicsObject):
    """Many short texts at data positions, drawn in one paint at a fixed pixel size (not stretched
    by the view). Far cheaper than one TextItem each: setting them costs nothing until painted, and
    each distinct text is laid out once (QStaticText) rather than at every paint."""

    def __init__(self, align=Qt.AlignmentFlag.AlignCenter, cell_width: float | None = None) -> None:
        super().__init__()
        self.align = align
        self.cell_width = cell_width  # data units: a text wider than a cell on screen is left out
        self.items: list[tuple[float, float, str, str]] = []  # x, y, text, colour
        self._bounds = QRectF()
        self._texts = StaticTexts()
        self._pens: dict[str, QPen] = {}

    @property
    def font(self) -> QFont:
        return self._texts.font

    @font.setter
    def font(self, font: QFont) -> None:
        self._texts.set_font(font)
        self.update()

    def set_items(self, items: list[tuple[float, float, str, str]]) -> None:
        self.prepareGeometryChange()
        self.items = items
        if items:
            xs = [i[0] for i in items]
            ys = [i[1] for i in items]
            self._bounds = QRectF(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
        else:
            self._bounds = QRectF()
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802
        # texts extend beyond their anchor points by a few pixels; the view covers the whole plot
        parent = self.parentItem()
        return parent.boundingRect() if parent is not None else self._bounds

    def paint(self, painter, option, widget=None) -> None:
        if not self.items:
            return
        transform = painter.transform()
        painter.save()
        painter.resetTransform()
        font = None
        left = bool(self.align & Qt.AlignmentFlag.AlignLeft)
        room = abs(transform.m11()) * self.cell_width - 2 if self.cell_width else math.inf
        colour = None
        for x, y, text, item_colour in self.items:
            if item_colour != colour:
                colour = item_colour
                pen = self._pens.get(colour)
                if pen is None:
                    pen = self._pens[colour] = QPen(pg.mkColor(colour))
                painter.setPen(pen)
            static, static_font = self._texts.entry(text)
            size = static.size()
            if size.width() > room:
                continue
            if static_font is not font:
                font = static_font
                painter.setFont(font)
            point = transform.map(QPointF(x, y))
            dx = 4.0 if left else -size.width() / 2
            painter.drawStaticText(QPointF(point.x() + dx, point.y() - size.height() / 2), static)
        painter.restore()
