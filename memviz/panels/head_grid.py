"""All GPT-2 heads at once: a layers x heads grid, each cell the current token's attention over positions.

Each cell is a small filled bar chart of the attention row of the query at the cursor: keys 0..t from
left to right, column height = attention weight on a common scale from 0 to 1, so a focused head shows
a spike and a diffuse head a flat strip along the bottom (any non-zero weight is at least one pixel
high). A cell has one bar column per screen pixel (two in the light "talk" look, so lines stay
visible on slides; at most MAX_POINTS); when the row is longer, each column shows the maximum over
its bin of neighbouring positions (peaks survive), and a short row spreads each key over several
columns. Hover for the exact numbers; click a cell to select that layer and head.

Speed: the whole grid is ONE raster image computed with numpy at screen resolution (uint32 pixels in
QImage's native ARGB32-premultiplied format, the fill colour on a transparent background, shown by a
single Raster item placed over [0, heads] x [0, layers]; no lookup table, levels or format
conversion), not 144 curves stroked by QPainter. A step changes only the pixels: the axes, the
frames and the view range stay as they are. The raster follows the view's size (resizes, the look)
and is re-drawn from the kept rows then.

A large grid (at least ASYNC_WEIGHTS weights: GPT-2 small's 144 heads from about T = 910 on, a
Llama-3.2-1B-shaped run's 512 heads from T = 256; all heads' rows at T = 7,000 took 28 ms on the UI
thread when the bound was 2^20) never makes the UI wait for its rows: the rows are rebuilt from the trace's queries and
keys and max-pooled into bar columns on the panel's own worker thread (`LatestOnly`: the newest
request wins, older ones waiting are dropped), and the result arrives through a queued signal; the
grid shows the last finished step meanwhile, its note naming the step it draws. Hover and tooltips
read the exact rows of the step drawn. A small grid draws at once, as before.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QPoint, QPointF, QRectF, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QCursor, QImage, QPen
from PySide6.QtWidgets import QGraphicsRectItem, QToolTip, QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels.attention import attention_shape, shows_attention
from memviz.panels.heatmap import GraphicsPanel, add_static_plot, clamp, show_token, style_plot, token_label
from memviz.panels.hover import HoverReadout
from memviz.panels.intervention_targets import head_targets
from memviz.panels.token_labels import live_labels
from memviz.panels.view_model import ViewModel

MAX_POINTS = 96  # columns (bins) per cell at most
MIN_POINTS = 8  # ... and at least, however small the window
MIN_LEVELS = 4  # pixel rows a cell's bars may fill, at least
MARGIN_X, MARGIN_Y = 0.06, 0.1  # empty share of a cell on each side
ASYNC_WEIGHTS = 1 << 17  # a grid of this many weights (layers x heads x keys) or more: worker thread
WORKER_NICE = 5  # the worker thread's niceness (Linux): the UI thread wins a contended core


def kv_groups(model: dict, heads: int) -> int:
    """Query heads per key/value head (1 without grouped-query attention)."""
    kv = int(model.get("num_kv_heads") or heads or 1)
    return max(1, heads // max(1, kv))


def grid_labels(model: dict, layers: int, heads: int) -> tuple[list[str], list[str]]:
    """Axis labels that mark the architecture: a sliding-window layer "3 w4096"; with grouped-query
    attention the first query head of each key/value group "8 kv2" (heads 8.. share key/value head 2)."""
    windows = list(model.get("sliding_window") or [])
    layer_labels = [
        f"{layer} w{windows[layer]}" if layer < len(windows) and windows[layer] else str(layer)
        for layer in range(layers)
    ]
    group = kv_groups(model, heads)
    head_labels = [f"{h} kv{h // group}" if group > 1 and h % group == 0 else str(h) for h in range(heads)]
    return layer_labels, head_labels


def enumerate_ticks(labels: list[str]):
    return ((i + 0.5, label) for i, label in enumerate(labels))


def structure_note(model: dict, layer: int, head: int) -> str:
    """The tooltip's line on the head's key/value group and the layer's window, where there are any."""
    heads = int(model.get("num_heads") or 0)
    group = kv_groups(model, heads)
    notes = []
    if group > 1:
        first = head // group * group
        notes.append(f"key/value head {head // group}, shared by heads {first}-{first + group - 1}")
    windows = list(model.get("sliding_window") or [])
    if layer < len(windows) and windows[layer]:
        notes.append(f"sliding window: the last {windows[layer]} tokens")
    if model.get("attn_softcap"):
        notes.append(f"attention logits soft-capped at {model['attn_softcap']:g}")
    return "".join(f"\n{n}" for n in notes)


def binned_max(rows: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Max of [..., n] over `bins` contiguous bins; returns (values [..., bins], bin centres in [0, 1])."""
    n = rows.shape[-1]
    bins = min(bins, n)
    edges = (np.arange(bins) * n) // bins
    values = np.maximum.reduceat(rows, edges, axis=-1) if bins < n else rows
    ends = np.append(edges[1:], n)
    centres = (edges + ends) / 2.0 / n
    return values, centres


def bar_heights(values: np.ndarray, levels: int) -> np.ndarray:
    """Attention weights in [0, 1] as bar heights in pixel rows: rounded, at least 1 for any weight > 0."""
    heights = np.rint(np.clip(values, 0.0, 1.0) * levels).astype(np.int16)
    np.maximum(heights, values > 0, out=heights)
    return heights


def _argb32(colour: str) -> np.uint32:
    """A colour as one ARGB32-premultiplied pixel: QImage's native format, drawn without conversion."""
    c = pg.mkColor(colour)
    a = c.alpha()
    r, g, b = ((v * a + 127) // 255 for v in (c.red(), c.green(), c.blue()))
    return np.uint32((a << 24) | (r << 16) | (g << 8) | b)


class Raster(pg.GraphicsObject):
    """uint32 ARGB32-premultiplied pixels shown over a rectangle of the view, through a QImage over
    the array's own memory: no copy or format conversion when they change (pyqtgraph's ImageItem
    converted the whole RGBA image at each step, then again at each paint)."""

    def __init__(self) -> None:
        super().__init__()
        self.pixels = np.zeros((0, 0), np.uint32)
        self.qimage: QImage | None = None
        self.rect = QRectF()

    def set_pixels(self, pixels: np.ndarray, rect: QRectF) -> None:
        """Show `pixels` ([height, width], C-contiguous; kept, not copied) over `rect`."""
        if pixels is not self.pixels or self.qimage is None:
            self.pixels = pixels
            height, width = pixels.shape
            self.qimage = QImage(
                pixels, width, height, pixels.strides[0], QImage.Format.Format_ARGB32_Premultiplied
            )
        if rect != self.rect:
            self.prepareGeometryChange()
            self.rect = QRectF(rect)
        self.update()

    def clear(self) -> None:
        self.qimage = None
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt's name
        return QRectF(self.rect)

    def paint(self, painter, *_args) -> None:
        if self.qimage is not None and self.pixels.size:
            painter.drawImage(self.rect, self.qimage)


def _lower_priority() -> None:
    """Make this thread nicer (Linux threads have their own niceness; elsewhere nothing, as there
    the id would name a process): on two busy cores the scheduler then gives the UI thread's paint
    the core before a rebuild."""
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < WORKER_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, WORKER_NICE)
    except (AttributeError, OSError):
        pass


class _Relay(QObject):
    """Carries a result from the worker thread to the UI thread (a queued connection)."""

    finished = Signal(object)  # (key, result)


class _Runner(QRunnable):
    def __init__(self, jobs: LatestOnly) -> None:
        super().__init__()
        self.jobs = jobs

    def run(self) -> None:
        self.jobs._run()


class LatestOnly(QObject):
    """One worker thread: `submit(key, fn)` runs `fn()` there, the newest submitted job next (one
    still waiting when a newer comes is dropped; the one running finishes); `done(key, result)` on
    the UI thread, for every job that ran (an exception is the result). The pool belongs to the
    owner: deleting it waits for the running job."""

    done = Signal(object, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._lock = threading.Lock()
        self._pending: tuple[object, Callable[[], object]] | None = None
        self._running = False
        self._relay = _Relay()
        self._relay.finished.connect(self._deliver)  # emitted on the worker: queued to this thread

    def submit(self, key: object, fn: Callable[[], object]) -> None:
        with self._lock:
            self._pending = (key, fn)
            if self._running:
                return
            self._running = True
        self.pool.start(_Runner(self))

    def drop(self) -> None:
        """Forget the job waiting (the running one still delivers)."""
        with self._lock:
            self._pending = None

    def busy(self) -> bool:
        with self._lock:
            return self._running

    def wait(self, msecs: int = -1) -> bool:
        """Block until the worker is idle (tests, benchmarks); queued results still need events."""
        return self.pool.waitForDone(msecs)

    def _run(self) -> None:
        _lower_priority()
        while True:
            with self._lock:
                job, self._pending = self._pending, None
                if job is None:
                    self._running = False
                    return
            key, fn = job
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001 - delivered to the panel, which says it in one line
                result = exc
            self._relay.finished.emit((key, result))

    def _deliver(self, item: tuple[object, object]) -> None:
        self.done.emit(*item)


class HeadGridPanel(GraphicsPanel):
    name = "heads"
    title = "Attention heads"
    architectures = ("gpt2",)
    kinds = ("transformer",)  # every transformers family (the trace's kind)

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.finish_controls()
        self.setToolTip(
            "Every head (columns) of every layer (rows): where the current token looks, keys 0..now from "
            "left to right, height = attention weight (0 to 1). Click a head to select it."
        )
        self.plot: pg.PlotItem = add_static_plot(self.canvas.ci)
        self.plot.getViewBox().setDefaultPadding(0.0)
        self.plot.setLabel("bottom", "head")
        self.plot.setLabel("left", "layer")
        self.frames = pg.PlotDataItem(connect="pairs")
        self.image = Raster()
        self.plot.addItem(self.image, ignoreBounds=True)
        self.plot.addItem(self.frames)
        self.selected = QGraphicsRectItem()
        self.selected.setZValue(5)
        self.plot.addItem(self.selected, ignoreBounds=True)
        self.plot.scene().sigMouseMoved.connect(self._hover)
        self.plot.scene().sigMouseClicked.connect(self._click)
        self.plot.getViewBox().sigResized.connect(self._resized)
        self.rows = np.zeros((0, 0, 0))  # the exact attention rows shown: [L, A, t+1]
        self.shape = (0, 0)
        self.step = -1
        self.last_tooltip = ""
        # the raster: a cell is cell_size = (width, height) image pixels; its bars use `bins` columns
        # starting at `margin[0]` and `levels` rows ending `margin[1]` rows above the cell's bottom
        self.cell_size = (0, 0)
        self.margin = (0, 0)
        self.bins = 0
        self.levels = 0
        self.heights = np.zeros((0, 0, 0), np.int16)  # [L, A, bins]: filled pixel rows per column
        self._fill = _argb32("#dcdcdc")
        self._pixels = np.zeros((0, 0, 0, 0), np.uint32)
        self.pixel = 1  # device pixels per image pixel: 2 in the light "talk" look, for slides
        self.readout = HoverReadout(self)
        self.readout.add(self._readout_at)
        # a large grid's rows come from the worker: (trace generation, step, bins) -> (rows, values)
        self.jobs = LatestOnly(self)
        self.jobs.done.connect(self._job_done)
        self._generation = 0
        self.wanted = -1  # the cursor's step (self.step: the step drawn)
        self._asked: int | None = None  # the step of the newest job submitted and not yet back
        self.apply_theme(view.state)

    # -- data -------------------------------------------------------------------------------
    def set_trace(self, trace: Trace | None) -> None:
        super().set_trace(trace)
        self._generation += 1  # results for the previous trace are dropped when they come
        self.jobs.drop()
        self.wanted = -1
        self._asked = None
        self.rows = np.zeros((0, 0, 0))
        self.heights = np.zeros((0, 0, 0), np.int16)
        self.image.clear()
        self.cell_size = (0, 0)
        self.step = -1
        if not shows_attention(trace):
            self.shape = (0, 0)
            self.frames.setData([], [])
            return
        self.shape = layers, heads = attention_shape(trace)
        xs, ys = [], []
        for layer in range(layers + 1):
            xs += [0, heads]
            ys += [layer, layer]
        for head in range(heads + 1):
            xs += [head, head]
            ys += [0, layers]
        self.frames.setData(np.array(xs, float), np.array(ys, float))
        layer_labels, head_labels = grid_labels(trace.model, layers, heads)
        self.plot.getAxis("left").setTicks([list(enumerate_ticks(layer_labels))])
        self.plot.getAxis("bottom").setTicks([list(enumerate_ticks(head_labels))])
        self.plot.setRange(xRange=(0, heads), yRange=(0, layers), padding=0.0)
        self._fit_raster()

    def render(self, state: ViewState) -> None:
        trace = self.trace
        if trace is None or len(trace) == 0 or state.cursor < 0 or not trace.has("attention"):
            return
        layers, heads = self.shape
        t = clamp(state.cursor, len(trace))
        self.wanted = t
        if self.drawn_later(t):
            if t == self.step and self.heights.shape[-1:] == (self.bins,):
                self.jobs.drop()  # back at the step drawn: nothing newer to wait for
                self._asked = None
            elif t != self._asked:
                self._submit(t)
        else:
            self.step = t
            self.rows = trace.attention_rows_at(t)
            self._update_heights()
            self._draw()
        layer, head = clamp(state.layer, layers), clamp(state.head, heads)
        self.selected.setRect(QRectF(head, layer, 1, 1))
        self._note()

    def _note(self) -> None:
        state = self.view.state
        layers, heads = self.shape
        layer, head = clamp(state.layer, layers), clamp(state.head, heads)
        tokens = live_labels(self.trace)
        if self.step < 0:
            note = f"drawing query {token_label(tokens, self.wanted)}..."
        else:
            note = f"query {token_label(tokens, self.step)}  selected: layer {layer}, head {head}"
            if self.wanted != self.step:
                note += f"  (drawing query {token_label(tokens, self.wanted)}...)"
        if note != self.note.text():
            self.note.setText(note)

    # -- the worker (a large grid) ------------------------------------------------------------
    def drawn_later(self, t: int) -> bool:
        """True when step t's grid is large enough to be rebuilt and pooled on the worker."""
        layers, heads = self.shape
        return layers * heads * (t + 1) >= ASYNC_WEIGHTS

    def _submit(self, t: int) -> None:
        trace, bins, pool = self.trace, self.bins, self.pooled

        def rebuild() -> tuple[np.ndarray, np.ndarray]:  # on the worker: reads the trace only
            rows = trace.attention_rows_at(t)
            return rows, pool(rows, bins)

        self._asked = t
        self.jobs.submit((self._generation, t, bins), rebuild)

    def _repool(self, rows: np.ndarray, t: int) -> None:
        """Step t's rows pooled again for the number of columns there is now (a resize), on the worker."""
        bins, pool = self.bins, self.pooled
        self._asked = t
        self.jobs.submit((self._generation, t, bins), lambda: (rows, pool(rows, bins)))

    def _job_done(self, key: tuple[int, int, int], result: object) -> None:
        """A worker's result, on the UI thread: drawn when it is newer than what is drawn (the last
        finished step shows while the cursor's is still on its way)."""
        generation, t, bins = key
        if generation != self._generation or self.trace is None:
            return
        if t == self._asked:
            self._asked = None
        if isinstance(result, Exception):
            self.note.setText(f"could not draw query {t}: {result}".splitlines()[0])
            return
        rows, values = result
        if t != self.wanted and self.step == self.wanted and self.heights.shape[-1:] == (self.bins,):
            return  # an older request, finished after the cursor came back to the step drawn
        if bins != self.bins:  # resized while it ran: pool the rows again for the columns there are
            self._repool(rows, t)
            return
        self.step, self.rows = t, rows
        self.heights = self._heights_of(values)
        self._draw()
        self._note()
        if self.wanted != t and self._asked is None and self.drawn_later(self.wanted):
            self._submit(self.wanted)  # the cursor moved on and nothing on the way is for it

    # -- the raster -------------------------------------------------------------------------
    def _fit_raster(self) -> bool:
        """Size the cells to the view's pixels: one image pixel per `self.pixel` device pixels, rounded
        down (so scaling the image up to the cell drops no column) and at most MAX_POINTS columns of
        bars (wider cells scale the image up). True when the size changed."""
        layers, heads = self.shape
        if not layers or not heads:
            return False
        vb = self.plot.getViewBox()
        scale = (self.canvas.devicePixelRatioF() or 1.0) / self.pixel
        cell_w = math.floor(vb.width() * scale / heads)
        cell_h = math.floor(vb.height() * scale / layers)
        mx = max(1, round(cell_w * MARGIN_X))
        my = max(1, round(cell_h * MARGIN_Y))
        bins = min(MAX_POINTS, max(MIN_POINTS, cell_w - 2 * mx))
        levels = max(MIN_LEVELS, cell_h - 2 * my)
        size = (bins + 2 * mx, levels + 2 * my)
        if size == self.cell_size:
            return False
        self.cell_size, self.margin, self.bins, self.levels = size, (mx, my), bins, levels
        # the image, reused from step to step: the margins stay transparent, _draw writes the bars
        self._pixels = np.zeros((layers, size[1], heads, size[0]), np.uint32)
        return True

    def _update_heights(self) -> None:
        if not self.rows.size or not self.bins:
            self.heights = np.zeros((*self.shape, 0), np.int16)
            return
        self.heights = self._heights_of(self.pooled(self.rows, self.bins))

    @staticmethod
    def pooled(rows: np.ndarray, bins: int) -> np.ndarray:
        """Rows [L, A, n] as `bins` bar columns each: the max over each bin of neighbouring keys, or
        a short row's keys spread over several columns; float32 [L, A, bins]. Reads nothing else
        (the worker calls it)."""
        if rows.dtype == np.float16:
            # attention is never negative, and non-negative halves order like their bit patterns: the
            # max over bins on integers is exact and several times faster than converting every weight
            values, _ = binned_max(rows.view(np.uint16), bins)
            values = values.view(np.float16)
        else:
            values, _ = binned_max(rows, bins)
        values = values.astype(np.float32, copy=False)
        n = values.shape[-1]
        if n < bins:  # a short row: each key spreads over several columns
            values = values[..., (np.arange(bins) * n) // bins]
        return values

    def _heights_of(self, values: np.ndarray) -> np.ndarray:
        """Pooled values [L, A, bins] as bar heights in pixel rows."""
        return bar_heights(values, self.levels)

    def _draw(self) -> None:
        """The image of every cell from self.heights: a pixel is filled when its row (counted up
        from the cell's baseline) is within its column's height."""
        layers, heads = self.shape
        if not self.heights.size:
            self.image.clear()
            return
        if self.heights.shape[-1] != self.bins:
            return  # pooled for another size: the worker pools the rows again, the old image stays
        width, height = self.cell_size
        mx, my = self.margin
        # rows of a cell, top to bottom: row r is filled when its column's height >= threshold[r]
        threshold = np.full(height, np.iinfo(np.int16).max, np.int16)
        threshold[my : height - my] = np.arange(self.levels, 0, -1)
        bars = self._pixels[..., mx : mx + self.bins]
        heights, threshold = self.heights[:, None, :, :], threshold[None, :, None, None]
        np.greater_equal(heights, threshold, out=bars, casting="unsafe")  # 1 where filled, else 0
        bars *= self._fill  # 1 -> the fill colour; 0 stays transparent
        self.image.set_pixels(
            self._pixels.reshape(layers * height, heads * width), QRectF(0, 0, heads, layers)
        )

    def _resized(self) -> None:
        if self.shape != (0, 0) and self._fit_raster() and self.rows.size:
            if self.drawn_later(self.step):
                self._repool(self.rows, self.step)
                return
            self._update_heights()
            self._draw()

    # -- hover and click --------------------------------------------------------------------
    def head_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        if not self.plot.vb.sceneBoundingRect().contains(scene_pos):
            return None
        point = self.plot.vb.mapSceneToView(scene_pos)
        layer, head = int(np.floor(point.y())), int(np.floor(point.x()))
        if 0 <= layer < self.shape[0] and 0 <= head < self.shape[1]:
            return layer, head
        return None

    def tooltip_for(self, layer: int, head: int) -> str:
        tokens = live_labels(self.trace)
        row = self.rows[layer, head]
        key = int(np.argmax(row))
        distance = float(row.astype(np.float64) @ (self.step - np.arange(len(row))))
        return (
            f"layer {layer}, head {head}\nquery {token_label(tokens, self.step)}\n"
            f"most attention: {float(row[key]):.6f} on {token_label(tokens, key)}\n"
            f"expected distance back: {distance:.2f} tokens"
            + structure_note(self.trace.model if self.trace is not None else {}, layer, head)
        )

    def keys_at(self, scene_pos: QPointF) -> tuple[int, int, range] | None:
        """(layer, head, keys) under the mouse: the keys drawn in the bar column there (one key, or
        the bin of keys whose maximum the column shows)."""
        cell = self.head_at(scene_pos)
        if cell is None or not self.rows.size or not self.bins:
            return None
        layer, head = cell
        n = self.rows.shape[-1]
        x = self.plot.vb.mapSceneToView(scene_pos).x()
        column = math.floor((x - head) * self.cell_size[0]) - self.margin[0]
        column = min(max(column, 0), self.bins - 1)
        if n <= self.bins:  # a short row: each key spreads over several columns
            key = (column * n) // self.bins
            return layer, head, range(key, key + 1)
        edges = (np.arange(self.bins + 1) * n) // self.bins
        return layer, head, range(int(edges[column]), int(edges[column + 1]))

    def readout_for(self, layer: int, head: int, keys: range) -> str:
        """One line: the head, the key(s) under the mouse and the weight drawn there."""
        return self.key_readout(layer, head, keys, "max", lambda v: f"{v:.3f}")

    def key_readout(self, layer: int, head: int, keys: range, pick: str, value) -> str:
        """The readout line: the key under the mouse, or of several the one with the largest value
        (`pick` "max") or magnitude ("largest", a difference), and `value(v)` of it."""
        tokens = live_labels(self.trace)
        row = self.rows[layer, head]
        values = row[keys.start : keys.stop].astype(np.float64)
        key = keys.start + int(np.argmax(np.abs(values) if pick == "largest" else values))
        text = f"'{show_token(tokens[key], 24)}'" if key < len(tokens) else ""
        where = (
            f"key {key} {text}"
            if len(keys) == 1
            else f"keys {keys.start}-{keys.stop - 1}, {pick} on {key} {text}"
        )
        return f"layer {layer}, head {head}: {where}: {value(float(row[key]))}"

    def _readout_at(self, scene_pos: QPointF) -> tuple[str, str] | None:
        found = self.keys_at(scene_pos)
        if found is None:
            return None
        layer, head, keys = found
        return self.readout_for(layer, head, keys), self.tooltip_for(layer, head)

    def intervention_targets_at(self, global_pos: QPoint) -> list[tuple[str, str]]:
        """What a right-click here can change: the head under the mouse, ablated."""
        scene_pos = self.canvas.mapToScene(self.canvas.viewport().mapFromGlobal(global_pos))
        cell = self.head_at(scene_pos)
        return head_targets(*cell) if cell is not None else []

    def scene_pos_of(self, layer: int, head: int) -> QPointF:
        return self.plot.vb.mapViewToScene(QPointF(head + 0.5, layer + 0.5))

    def _hover(self, scene_pos: QPointF) -> None:
        cell = self.head_at(scene_pos)
        if cell is None or not self.rows.size:
            return
        self.last_tooltip = self.tooltip_for(*cell)
        QToolTip.showText(QCursor.pos(), self.last_tooltip, self.canvas)

    def _click(self, event) -> None:
        cell = self.head_at(event.scenePos())
        if cell is not None:
            self.view.update(layer=cell[0], head=cell[1])

    # -- look -------------------------------------------------------------------------------
    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        theme = state.theme_obj
        if not hasattr(self, "plot"):
            return
        style_plot(self.plot, theme)
        self._fill = _argb32("#dcdcdc" if theme.is_dark else "#1f3b73")
        pixel = 1 if theme.is_dark else 2
        if pixel != self.pixel:
            self.pixel = pixel
            self._resized()
        self.frames.setPen(pg.mkPen("#55585e" if theme.is_dark else "#c8c8c8", width=1))
        pen = QPen(pg.mkColor(theme.accent))
        pen.setWidthF(3)
        pen.setCosmetic(True)
        self.selected.setPen(pen)
        if self.heights.size:
            self._draw()
