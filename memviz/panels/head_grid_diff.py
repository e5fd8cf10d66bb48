"""The head grid of a difference of two runs (B - A): each head's attention row at the cursor, B's
minus A's, as bars up (B attends more, red) and down (B attends less, blue) from a zero line.

The same grid, raster and hover as the head grid (head_grid.HeadGridPanel), fed a TraceDiff; only
the bars are signed. Bar heights are on a symmetric scale around 0 (the view's colour scale:
"stable" the largest |B - A| so far, "fixed" +-1, "step" this step's largest), given in the note.
A bin of neighbouring keys shows its largest difference in size, with its sign.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QWidget

from memviz.core.view import ViewState
from memviz.panels import colormaps
from memviz.panels.head_grid import HeadGridPanel, _argb32, structure_note
from memviz.panels.heatmap import token_label
from memviz.panels.token_labels import live_labels
from memviz.panels.view_model import ViewModel

UP, DOWN = "#d6604d", "#4393c3"  # the diverging map's red and blue: B more, B less


def signed_binned(rows: np.ndarray, bins: int) -> np.ndarray:
    """Per bin of contiguous keys, the value largest in size, with its sign ([..., bins])."""
    n = rows.shape[-1]
    bins = min(bins, n)
    if bins >= n:
        return rows
    edges = (np.arange(bins) * n) // bins
    high = np.maximum.reduceat(rows, edges, axis=-1)
    low = np.minimum.reduceat(rows, edges, axis=-1)
    return np.where(np.abs(low) > np.abs(high), low, high)


class HeadGridDiffPanel(HeadGridPanel):
    plain = HeadGridPanel  # the class this stands in for (memviz.panels.compare_modes)
    level = 1.0  # |B - A| at a full bar
    _held = 0.0  # the largest |B - A| so far (the "stable" scale)
    _scale_mode = "stable"

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.setToolTip(
            "B \u2212 A: every head's attention at the current token, B's minus A's: bars up where B "
            "attends more, down where it attends less. Click a head to select it."
        )

    def set_trace(self, trace) -> None:
        self._held = 0.0
        super().set_trace(trace)

    def render(self, state: ViewState) -> None:
        self._scale_mode = state.scale
        super().render(state)

    def _note(self) -> None:
        """The step drawn (a large grid's worker may still be on the cursor's) and the scale."""
        t = self.step if self.step >= 0 else max(self.wanted, 0)
        same = " (no difference: A and B attend alike)" if self.rows.size and not np.any(self.rows) else ""
        later = ""
        if self.wanted != self.step:
            later = f"  (drawing query {token_label(live_labels(self.trace), self.wanted)}...)"
        self.note.setText(
            f"B \u2212 A at query {token_label(live_labels(self.trace), t)}  full bar = \u00b1{self.level:g}"
            f"{same}{later}"
        )

    @staticmethod
    def pooled(rows: np.ndarray, bins: int) -> np.ndarray:
        """Per bar column the difference largest in size, with its sign (a short row's keys spread
        over several columns): float32 [L, A, bins]."""
        values = signed_binned(rows.astype(np.float32, copy=False), bins)
        n = values.shape[-1]
        if n < bins:  # a short row: each key spreads over several columns
            values = values[..., (np.arange(bins) * n) // bins]
        return values

    def _heights_of(self, values: np.ndarray) -> np.ndarray:
        """Signed bar heights on the view's symmetric scale; the peak |B - A| is the pooled values'
        (each bin keeps its largest difference in size, so the largest of all survives)."""
        mode = self._scale_mode
        peak = float(np.nanmax(np.abs(values))) if values.size else 0.0
        if mode == "fixed":
            self.level = 1.0
        else:
            if mode == "stable":
                peak = self._held = max(self._held, peak)
            self.level = colormaps.symmetric_level(np.array([peak]), floor=1e-3) if peak > 0 else 1.0
        half = max(1, self.levels // 2)
        return np.rint(np.clip(values / self.level, -1.0, 1.0) * half).astype(np.int16)

    def _draw(self) -> None:
        """Signed bars: up from the cell's middle for B - A > 0, down for < 0."""
        layers, heads = self.shape
        if not self.heights.size:
            self.image.clear()
            return
        if self.heights.shape[-1] != self.bins:
            return  # pooled for another size: the worker pools the rows again, the old image stays
        width, height = self.cell_size
        mx, my = self.margin
        half = max(1, self.levels // 2)
        mid = my + half  # the first row below the zero line
        big = np.iinfo(np.int16).max
        rows = np.arange(height)
        up = np.where((rows >= mid - half) & (rows < mid), mid - rows, big).astype(np.int16)
        down = np.where((rows >= mid) & (rows < mid + half), rows - mid + 1, big).astype(np.int16)
        h = self.heights[:, None, :, :]
        filled_up = h >= up[None, :, None, None]
        filled_down = -h >= down[None, :, None, None]
        bars = self._pixels[..., mx : mx + self.bins]
        bars[...] = 0
        bars[filled_up] = self._up
        bars[filled_down] = self._down
        zero = self._pixels[:, mid, :, mx : mx + self.bins]
        zero[zero == 0] = self._zero
        self.image.set_pixels(
            self._pixels.reshape(layers * height, heads * width), QRectF(0, 0, heads, layers)
        )

    def tooltip_for(self, layer: int, head: int) -> str:
        tokens = live_labels(self.trace)
        row = self.rows[layer, head].astype(np.float64)
        more, less = int(np.argmax(row)), int(np.argmin(row))
        distance = float(row @ (self.step - np.arange(len(row))))
        return (
            f"layer {layer}, head {head}: B \u2212 A\nquery {token_label(tokens, self.step)}\n"
            f"most gained: {row[more]:+.6f} on {token_label(tokens, more)}\n"
            f"most lost: {row[less]:+.6f} on {token_label(tokens, less)}\n"
            f"expected distance back: {distance:+.2f} tokens"
            + structure_note(self.trace.model if self.trace is not None else {}, layer, head)
        )

    def readout_for(self, layer: int, head: int, keys: range) -> str:
        return self.key_readout(layer, head, keys, "largest", lambda v: f"B \u2212 A = {v:+.3f}")

    def apply_theme(self, state: ViewState) -> None:
        self._up, self._down = _argb32(UP), _argb32(DOWN)
        self._zero = _argb32("#6a6d73" if state.theme_obj.is_dark else "#b0b0b0")
        super().apply_theme(state)
