"""A reusable, fast pyqtgraph heatmap, and the plumbing the data panels share.

`Heatmap` is a graphics layout item (so several fit in one canvas): a PlotItem holding an
ImageItem drawn with fixed levels and a lookup table (no autoLevels: a render costs about a
millisecond for a 1024 x 1024 image), a ColorBarItem beside it, a cursor line at the current step,
an outlined row (the current query, the selected unit), hover tooltips with the exact value and the
token text, and a `clicked(row, col)` signal.

The image holds the data exactly as given (`Heatmap.data`): the trace's own numbers.
"""

from __future__ import annotations

import functools
import html
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QFont, QFontMetricsF, QImage, QPaintEngine, QPainter, QPen, QPixmap, QTransform
from PySide6.QtWidgets import (
    QGraphicsObject,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from memviz.core.trace import Trace
from memviz.core.view import THEMES, Theme, ViewState
from memviz.panels import colormaps
from memviz.panels.base import Panel
from memviz.panels.live_label import LiveLabel
from memviz.panels.scales import ColourScale
from memviz.panels.static_texts import StaticTexts
from memviz.panels.view_model import ViewModel


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


def candidate_text(trace: Trace | None, token_id: int, known: dict[int, str] | None = None) -> str:
    """A candidate token's text: from the trace's vocabulary, else from `known`, else '#id'."""
    text = trace.text_of(token_id) if trace is not None else None
    if text is None and known:
        text = known.get(int(token_id))
    return f"#{int(token_id)}" if text is None else text


def show_token(text: str, limit: int = 12) -> str:
    """A token's text made visible on an axis or in a tooltip: newlines, tabs and spaces shown."""
    shown = text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r").replace(" ", "\u2423")
    if len(shown) > limit:
        shown = shown[: limit - 1] + "\u2026"
    return shown or "\u2205"


def token_label(tokens: Sequence[str], index: int) -> str:
    if 0 <= index < len(tokens):
        return f"{index} '{show_token(tokens[index], 24)}'"
    return str(index)


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


def style_plot(plot: pg.PlotItem, theme: Theme) -> None:
    fit_label(plot.titleLabel)
    for name in ("left", "bottom", "right", "top"):
        axis = plot.getAxis(name)
        style_axis(axis, theme)
    if plot.titleLabel is not None and plot.titleLabel.text:
        plot.setTitle(plot.titleLabel.text, color=theme.foreground, size=f"{theme.font_size}pt")


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


def stable_extent(n: int) -> int:
    """How far a growing axis shows: n rounded up to a quarter of its power of two (exact up to 64).

    The view then changes every few dozen steps instead of at every step, so playback neither
    re-lays out the axes each frame (their text costs milliseconds) nor makes the picture jitter.
    """
    if n <= 64:
        return max(n, 1)
    quantum = 1 << (n.bit_length() - 3)
    return -(-n // quantum) * quantum


class _Image(pg.GraphicsObject):
    """The heatmap's cells: a persistent colour buffer drawn through a QImage over the same memory.

    A new step colours only its new cells, and a paint copies nothing: at T = 1024 re-colouring the
    whole T x T image every step (pyqtgraph's ImageItem) cost several milliseconds per panel.
    Reports hovers and clicks (in cell coordinates) to its Heatmap.
    """

    def __init__(self, owner: Heatmap) -> None:
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

    def show_cells(self, rows: int, cols: int) -> None:
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
        self.image = _Image(self)
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
        levels = self.scale.levels(None if levels is None else (float(levels[0]), float(levels[1])))
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
        if keep is None or self._coloured_levels != self.levels:
            buffer[:rows, :cols] = colour(data, self.levels, lut)
        else:
            kr, kc = min(keep[0], rows, old_rows), min(keep[1], cols, old_cols)
            if kr < rows:
                buffer[kr:rows, :cols] = colour(data[kr:rows], self.levels, lut)
            if kc < cols and kr:
                buffer[:kr, kc:cols] = colour(data[:kr, kc:cols], self.levels, lut)
        self._coloured_levels = self.levels
        self.image.show_cells(rows, cols)
        if self.highlight_row is not None:
            self._place_row_box()
        if self.following:
            self._follow()

    def _follow(self) -> None:
        rows, cols = self.data.shape if self.data.ndim == 2 else (0, 0)
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
            self._show_extent(self.data.shape)

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
        width = self.data.shape[1] if self.data.ndim == 2 else 0
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

    def tooltip_at(self, row: int, col: int) -> str:
        value = float(self.data[row, col])
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


class FittedCanvas(pg.GraphicsLayoutWidget):
    """A canvas that asks its dock for the room its plots need at least (axes, colour bars,
    titles), so a narrow dock stops there instead of cutting the right side off. Qt asks only
    when the layout changes, never at a step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # the plots' needs grow with their contents (wider tick labels, a title): the layout then
        # outgrows the view, and the dock is asked again
        self.ci.geometryChanged.connect(self._outgrown)

    def _outgrown(self) -> None:
        hint = self.minimumSizeHint()
        if hint.width() > self.width() or hint.height() > self.height():
            self.updateGeometry()

    def minimumSizeHint(self):  # noqa: N802 - Qt's name
        from PySide6.QtCore import QSize

        need = self.ci.effectiveSizeHint(Qt.SizeHint.MinimumSize)
        frame = 2 * self.frameWidth() + 2
        return QSize(math.ceil(need.width()) + frame, math.ceil(need.height()) + frame)


MIN_VIEW = (48, 36)  # pixels: the least a heatmap's or a list's cells get (the rest gives way first)


class GraphicsPanel(Panel):
    """A panel made of an optional row of controls above one pyqtgraph canvas.

    Before each render its heatmaps are told the view's colour scale and the layer shown (a
    subclass' `render` is wrapped for this), and a new trace resets their held levels.
    """

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        render = cls.__dict__.get("render")
        if render is None or getattr(render, "_scaled", False):
            return

        @functools.wraps(render)
        def scaled_render(self, state: ViewState) -> None:
            self.begin_scales(state)
            return render(self, state)

        scaled_render._scaled = True
        cls.render = scaled_render

    def begin_scales(self, state: ViewState) -> None:
        # a panel with a layer selector shows one layer: its stable levels are held per layer
        context = state.layer if "layer" in self._spins else 0
        for heatmap in self.colour_scaled():
            heatmap.scale.begin(state.scale, context, self.trace)

    def colour_scaled(self) -> tuple[Heatmap, ...]:
        """The panel's heatmaps (found once: they are built with the panel)."""
        found = self.__dict__.get("_scaled_heatmaps")
        if not found:  # a tuple: heatmaps_of looks in lists and dicts only, so it is not counted twice
            found = self._scaled_heatmaps = tuple(heatmaps_of(self))
        return found

    def set_trace(self, trace: Trace | None) -> None:
        super().set_trace(trace)
        for heatmap in self.colour_scaled():
            heatmap.scale.reset()

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        self.controls = QHBoxLayout()
        self.controls.setContentsMargins(4, 0, 4, 0)
        layout.addLayout(self.controls)
        self.canvas = FittedCanvas()
        self.canvas.ci.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.canvas, 1)
        self.note = LiveLabel("")
        self.note.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._spins: dict[str, QSpinBox] = {}

    def add_spin(self, key: str, label: str) -> QSpinBox:
        """A selector bound to a ViewState field (layer, head, unit)."""
        text = QLabel(label)
        spin = QSpinBox()
        spin.setRange(0, 0)
        spin.valueChanged.connect(lambda value, key=key: self.view.update(**{key: int(value)}))
        self.controls.addWidget(text)
        self.controls.addWidget(spin)
        self._spins[key] = spin
        return spin

    def sync_spin(self, key: str, value: int, maximum: int) -> None:
        spin = self._spins[key]
        maximum = max(0, maximum)
        if (spin.maximum(), spin.value()) == (maximum, value):
            return
        spin.blockSignals(True)
        if spin.maximum() != maximum:
            spin.setRange(0, maximum)  # re-lays out the whole dock, even for the same range: only on a change
        spin.setValue(value)
        spin.blockSignals(False)

    def finish_controls(self) -> None:
        self.controls.addStretch(1)
        self.controls.addWidget(self.note)

    def apply_theme(self, state: ViewState) -> None:
        theme = state.theme_obj
        self.canvas.setBackground(theme.panel_background)
        self.setStyleSheet(
            f"QLabel {{ color: {theme.foreground}; font-size: {theme.font_size}pt; }}"
            f"QSpinBox {{ font-size: {theme.font_size}pt; }}"
        )
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(self.backgroundRole(), pg.mkColor(theme.panel_background))
        self.setPalette(palette)


def clamp(value: int, upper: int) -> int:
    """value limited to [0, upper - 1] (0 when upper is 0)."""
    return max(0, min(int(value), max(0, upper - 1)))
