"""All GPT-2 heads at once: a layers x heads grid, each cell the current token's attention over positions.

Each cell plots the attention row of the query at the cursor (keys 0..t from left to right) on a
common scale from 0 to 1, so a focused head shows a spike and a diffuse head a flat line. Long rows
are drawn as their maximum over bins of neighbouring positions (peaks survive). Hover for the exact
numbers; click a cell to select that layer and head.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QCursor, QPen
from PySide6.QtWidgets import QGraphicsRectItem, QToolTip, QWidget

from memviz.core.trace import Trace
from memviz.ui.panels.attention import attention_shape, shows_attention
from memviz.ui.panels.heatmap import GraphicsPanel, add_static_plot, clamp, style_plot, token_label
from memviz.ui.view import ViewModel, ViewState

MAX_POINTS = 96  # per cell
MARGIN_X, MARGIN_Y = 0.06, 0.1


def binned_max(rows: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Max of [..., n] over `bins` contiguous bins; returns (values [..., bins], bin centres in [0, 1])."""
    n = rows.shape[-1]
    bins = min(bins, n)
    edges = (np.arange(bins) * n) // bins
    values = np.maximum.reduceat(rows, edges, axis=-1) if bins < n else rows
    ends = np.append(edges[1:], n)
    centres = (edges + ends) / 2.0 / n
    return values, centres


class HeadGridPanel(GraphicsPanel):
    name = "heads"
    title = "Attention heads"
    architectures = ("gpt2",)

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
        self.curves = pg.PlotDataItem(connect="finite")
        self.plot.addItem(self.frames)
        self.plot.addItem(self.curves)
        self.selected = QGraphicsRectItem()
        self.selected.setZValue(5)
        self.plot.addItem(self.selected, ignoreBounds=True)
        self.plot.scene().sigMouseMoved.connect(self._hover)
        self.plot.scene().sigMouseClicked.connect(self._click)
        self.rows = np.zeros((0, 0, 0))  # the exact attention rows shown: [L, A, t+1]
        self.shape = (0, 0)
        self.step = -1
        self.last_tooltip = ""
        self._grid_cache: dict[tuple[int, int], np.ndarray] = {}
        self.apply_theme(view.state)

    # -- data -------------------------------------------------------------------------------
    def set_trace(self, trace: Trace | None) -> None:
        super().set_trace(trace)
        self.rows = np.zeros((0, 0, 0))
        self.curves.setData([], [])
        self.step = -1
        self._grid_cache.clear()
        if not shows_attention(trace):
            self.shape = (0, 0)
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
        self.plot.getAxis("left").setTicks([[(layer + 0.5, str(layer)) for layer in range(layers)]])
        self.plot.getAxis("bottom").setTicks([[(head + 0.5, str(head)) for head in range(heads)]])
        self.plot.setRange(xRange=(0, heads), yRange=(0, layers), padding=0.0)

    def _x_grid(self, centres: np.ndarray) -> np.ndarray:
        layers, heads = self.shape
        key = (len(centres), int(centres[-1] * 1e6))
        grid = self._grid_cache.get(key)
        if grid is None:
            x = np.empty((layers, heads, len(centres) + 1))
            x[:, :, :-1] = np.arange(heads)[None, :, None] + MARGIN_X + (1 - 2 * MARGIN_X) * centres
            x[:, :, -1] = np.nan
            grid = self._grid_cache[key] = x.ravel()
        return grid

    def render(self, state: ViewState) -> None:
        trace = self.trace
        if trace is None or len(trace) == 0 or state.cursor < 0 or not trace.has("attention"):
            return
        layers, heads = self.shape
        t = clamp(state.cursor, len(trace))
        self.step = t
        self.rows = trace.attention_at(t)
        values, centres = binned_max(self.rows.astype(np.float32, copy=False), MAX_POINTS)
        y = np.empty((layers, heads, values.shape[-1] + 1))
        y[:, :, :-1] = np.arange(layers)[:, None, None] + (1 - MARGIN_Y) - (1 - 2 * MARGIN_Y) * values
        y[:, :, -1] = np.nan
        self.curves.setData(self._x_grid(centres), y.ravel())
        layer, head = clamp(state.layer, layers), clamp(state.head, heads)
        self.selected.setRect(QRectF(head, layer, 1, 1))
        self.note.setText(f"query {token_label(trace.token_text, t)}  selected: layer {layer}, head {head}")

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
        tokens = self.trace.token_text if self.trace is not None else []
        row = self.rows[layer, head]
        key = int(np.argmax(row))
        distance = float(row.astype(np.float64) @ (self.step - np.arange(len(row))))
        return (
            f"layer {layer}, head {head}\nquery {token_label(tokens, self.step)}\n"
            f"most attention: {float(row[key]):.6f} on {token_label(tokens, key)}\n"
            f"expected distance back: {distance:.2f} tokens"
        )

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
        line = "#dcdcdc" if theme.is_dark else "#1f3b73"
        self.curves.setPen(pg.mkPen(line, width=1.5 if theme.is_dark else 2))
        self.frames.setPen(pg.mkPen("#55585e" if theme.is_dark else "#c8c8c8", width=1))
        pen = QPen(pg.mkColor(theme.accent))
        pen.setWidthF(3)
        pen.setCosmetic(True)
        self.selected.setPen(pen)
