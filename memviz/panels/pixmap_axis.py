"""Axes for the panels' plots: tick spacing that fits an axis' length, `PixmapAxis` (drawn from a
pixmap of its picture), and `TokenAxis` (token text when zoomed in). Split out of heatmap.py
(issue 14)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QFontMetricsF, QPaintEngine, QPainter, QPixmap, QTransform

from memviz.panels import colormaps
from memviz.panels.token_text import show_token


def label_room(axis: pg.AxisItem) -> float:
    """Pixels one tick label needs along `axis` (with a gap), in its tick font."""
    font = axis.style.get("tickFont") or axis.font()
    metrics = QFontMetricsF(font)
    if axis.orientation in ("bottom", "top"):
        return metrics.horizontalAdvance("-0.00") + 10.0
    return metrics.height() * 1.3


def fitted_spacing(axis: pg.AxisItem, levels: list, min_val: float, max_val: float, size: float) -> list:
    """pyqtgraph's tick levels without those whose labels would run together on a short axis
    ("0.20.40.60.8"): a level is kept when its ticks are a label's room apart; when none is, one
    coarser 1-2-5 step is."""
    span = abs(max_val - min_val)
    if not levels or span == 0 or size <= 0:
        return levels
    smallest = label_room(axis) * span / size
    kept = [(spacing, offset) for spacing, offset in levels if spacing >= smallest * (1 - 1e-9)]
    return kept or [(colormaps.nice_ceiling(smallest), 0.0)]


def fit_ticks(axis: pg.AxisItem) -> None:
    """Give an axis that is not a PixmapAxis (a colour bar's) ticks that fit its length."""
    if isinstance(axis, PixmapAxis):
        return
    base = axis.tickSpacing  # the bound method of the axis' own class

    def spacing(min_val: float, max_val: float, size: float) -> list:
        return fitted_spacing(axis, base(min_val, max_val, size), min_val, max_val, size)

    axis.tickSpacing = spacing


class PixmapAxis(pg.AxisItem):
    """An axis that draws itself on screen by copying a pixmap of its drawing.

    pyqtgraph replays the axis' QPicture at every paint, laying out each tick text again, and a
    view's repaint at every step takes its axes along (their rectangles touch the view's by a
    pixel): six axes cost about half a millisecond per step. The pixmap is made from the picture
    at the same sub-pixel offset, so the pixels are the ones a replay gives. Exports (vector
    painters, scaled images) replay the picture as before.
    """

    PIXMAPS = 8  # pixmaps kept per axis (an axis that switches between a few pictures keeps each)
    use_pixmaps = True  # False: replay the picture at every paint, as pyqtgraph does

    def __init__(self, orientation: str, **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self._pixmaps: dict[int, tuple[object, tuple, QPixmap]] = {}  # id(picture) -> (picture, key, pixmap)

    def tickSpacing(self, minVal, maxVal, size):  # noqa: N802, N803 (pyqtgraph's names)
        return fitted_spacing(self, super().tickSpacing(minVal, maxVal, size), minVal, maxVal, size)

    def generateDrawSpecs(self, p):  # noqa: N802 (pyqtgraph's name)
        """Ticks given with setTicks (one per layer, per head) thinned to a label's room apart."""
        given = self._tickLevels
        span = abs(self.range[1] - self.range[0])
        length = self.width() if self.orientation in ("bottom", "top") else self.height()
        if not given or span == 0 or length <= 0:
            return super().generateDrawSpecs(p)
        apart = label_room(self) * span / length
        thinned = []
        for level in given:
            kept: list = []
            for value, text in sorted(level, key=lambda tick: tick[0]):
                if not kept or value - kept[-1][0] >= apart * (1 - 1e-9):
                    kept.append((value, text))
            thinned.append(kept)
        self._tickLevels = thinned
        try:
            return super().generateDrawSpecs(p)
        finally:
            self._tickLevels = given

    def paint(self, p, opt, widget) -> None:
        transform = p.worldTransform()
        if (
            self.picture is None
            or not self.use_pixmaps
            or p.paintEngine().type() != QPaintEngine.Type.Raster
            or transform.type().value > QTransform.TransformationType.TxTranslate.value
        ):
            super().paint(p, opt, widget)  # makes the picture when there is none, and replays it
            return
        rect = self.boundingRect().adjusted(-2, -2, 2, 2)  # line ends reach a little past the rectangle
        ratio = p.device().devicePixelRatioF() if p.device() is not None else 1.0
        # the pixmap lands on a whole device pixel (at 1.25 or 1.5 a whole logical pixel is not one),
        # and the picture is drawn into it at the remaining sub-pixel offset
        corner = transform.map(rect.topLeft())
        x, y = math.floor(corner.x() * ratio), math.floor(corner.y() * ratio)
        key = (
            corner.x() - x / ratio,
            corner.y() - y / ratio,
            rect.width(),
            rect.height(),
            ratio,
            p.renderHints(),
        )
        entry = self._pixmaps.get(id(self.picture))
        if entry is None or entry[0] is not self.picture or entry[1] != key:
            pixmap = QPixmap(math.ceil((rect.width() + 1) * ratio), math.ceil((rect.height() + 1) * ratio))
            pixmap.setDevicePixelRatio(ratio)
            pixmap.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pixmap)
            painter.setRenderHints(p.renderHints())
            painter.translate(key[0] - rect.left(), key[1] - rect.top())
            self.picture.play(painter)
            painter.end()
            if len(self._pixmaps) >= self.PIXMAPS:
                self._pixmaps.clear()
            entry = self._pixmaps[id(self.picture)] = (self.picture, key, pixmap)
        p.save()
        p.resetTransform()
        p.drawPixmap(QPointF(x / ratio, y / ratio), entry[2])
        p.restore()


def pixmap_axes(**axes: pg.AxisItem) -> dict[str, pg.AxisItem]:
    """Axis items for a PlotItem: the ones given, and a PixmapAxis for the left and bottom sides.
    (PlotItem shows every axis it is given: top and right stay its own, hidden, axes.)"""
    return {side: axes.get(side) or PixmapAxis(side) for side in ("left", "bottom")} | axes


class TokenAxis(PixmapAxis):
    """An axis over steps whose cells span [i, i+1]: token text when zoomed in, step numbers otherwise."""

    def __init__(self, orientation: str, **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self.tokens: Sequence[str] = ()
        self._token_mode = False

    def set_tokens(self, tokens: Sequence[str]) -> None:
        self.tokens = tokens
        self.picture = None
        self.update()

    def tickValues(self, minVal, maxVal, size):  # noqa: N802 (pyqtgraph's name)
        horizontal = self.orientation in ("bottom", "top")
        per_label = 40.0 if horizontal else 14.0
        lo, hi = math.ceil(minVal - 0.5), math.floor(maxVal - 0.5)
        visible = hi - lo + 1
        self._token_mode = bool(self.tokens) and 0 < visible <= max(1.0, size / per_label)
        if self._token_mode:
            values = [i + 0.5 for i in range(max(lo, 0), min(hi, len(self.tokens) - 1) + 1)]
            return [(1.0, values)]
        levels = super().tickValues(minVal - 0.5, maxVal - 0.5, size)
        return [(spacing, [v + 0.5 for v in values if float(v).is_integer()]) for spacing, values in levels]

    def tickStrings(self, values, scale, spacing):  # noqa: N802
        index = [int(round(v - 0.5)) for v in values]
        if self._token_mode:
            return [show_token(self.tokens[i], 8) if 0 <= i < len(self.tokens) else "" for i in index]
        return [str(i) for i in index]
