"""Axes over tokens and over units that label as many rows or columns as fit, never overlapping.

`LabelledTokenAxis` writes a token's text at every token when there is room, else at every n-th
(n from 1, 2, 5, 10, 20, 50, ...: the labelled positions stay put while a run grows), n chosen from
the widest (horizontal axis) or the tallest (vertical axis) label it would draw. TokenAxis before it
showed the tokens only when all of them fitted and step numbers otherwise, so a long attention map
had no text on its axes at all.

`UnitAxis` labels the rows of a units x steps heatmap with the unit shown in each row: under a sort
the row's position is not the unit's number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFont, QFontMetrics

from memviz.panels.heatmap import Heatmap, PixmapAxis, TokenAxis, show_token

LABEL_CHARS = 8  # a token's text on an axis: at most this many characters
GAP = 6  # pixels between two labels along a horizontal axis
SPARSE_STEP = 20  # tokens per label from which a long axis writes step numbers instead of tokens
LONG_SPAN = 200  # tokens in view from which an axis counts as long


def label_step(needed: float, per_cell: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... cells per label that gives each label `needed` pixels."""
    if per_cell <= 0:
        return 0
    cells = needed / per_cell
    base = 1
    while True:
        for factor in (1, 2, 5):
            if base * factor >= cells:
                return base * factor
        base *= 10


def labelled(lo: int, hi: int, step: int) -> list[int]:
    """Multiples of `step` in [lo, hi]."""
    if step <= 0 or hi < lo:
        return []
    return list(range(-(-lo // step) * step, hi + 1, step))


class _Measured:
    """Label sizes in the axis' tick font, remembered per text."""

    def __init__(self) -> None:
        self._font_key = ""
        self._metrics: QFontMetrics | None = None
        self._widths: dict[str, int] = {}

    def metrics(self, axis: pg.AxisItem) -> QFontMetrics:
        font = axis.style.get("tickFont") or QFont()
        key = font.key()
        if key != self._font_key or self._metrics is None:
            self._font_key, self._metrics = key, QFontMetrics(font)
            self._widths.clear()
        return self._metrics

    def width(self, axis: pg.AxisItem, text: str) -> int:
        metrics = self.metrics(axis)
        width = self._widths.get(text)
        if width is None:
            width = self._widths[text] = metrics.horizontalAdvance(text)
        return width


class LabelledTokenAxis(TokenAxis):
    """A TokenAxis (cells span [i, i+1]) writing token texts at every `step`-th token that fits."""

    def __init__(self, orientation: str, **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self.step = 0  # tokens per label in the picture drawn last (0: none drawn)
        self.shown: list[int] = []  # token indices labelled in that picture
        self._range = (0.0, 0.0)
        self._measured = _Measured()
        self._token_mode = True  # token texts (False: step numbers, when labels are sparse)
        self._sampled: dict[int, int] = {}  # token index -> its label's width (the sampled ones)
        self._sampled_in: QFontMetrics | None = None  # the metrics those widths are in

    def set_tokens(self, tokens: Sequence[str]) -> None:
        self._sampled = {}
        super().set_tokens(tokens)

    def _widest(self, lo: int, hi: int) -> int:
        """The widest label of a sample of 256 to 512 tokens of lo..hi (a long run is not measured
        whole): every stride-th token, the stride a power of two, so that another view of a long
        run (a scrub, a new step) samples mostly the same tokens, whose widths are remembered."""
        stride = 1
        while (hi - lo + 1) // stride > 512:
            stride *= 2
        metrics = self._measured.metrics(self)
        if metrics is not self._sampled_in:  # another font
            self._sampled, self._sampled_in = {}, metrics
        widths, best = self._sampled, 0
        for i in range(-(-lo // stride) * stride, hi + 1, stride):
            width = widths.get(i)
            if width is None:
                width = widths[i] = metrics.horizontalAdvance(show_token(self.tokens[i], LABEL_CHARS))
            best = max(best, width)
        return best

    def labels(self, indices: Sequence[int]) -> list[str]:
        return [show_token(self.tokens[i], LABEL_CHARS) for i in indices]

    def tickValues(self, minVal, maxVal, size):  # noqa: N802 (pyqtgraph's name)
        minVal, maxVal = sorted((minVal, maxVal))  # an inverted view gives them top first
        n = len(self.tokens)
        lo, hi = max(math.ceil(minVal - 0.5), 0), min(math.floor(maxVal - 0.5), n - 1)
        self._range = (minVal, maxVal)
        if n == 0 or hi < lo or size <= 0 or maxVal <= minVal:
            self.step, self.shown = 0, []
            return []
        per_cell = size / (maxVal - minVal)
        if self.orientation in ("bottom", "top"):
            needed = self._widest(lo, hi) + GAP  # the widest of a sample of the labels
        else:
            needed = self._measured.metrics(self).height() + 1
        self.step = label_step(needed, per_cell)
        # A long axis labelling one token in twenty or fewer: scattered token texts say little (a character model's "t h s a"),
        # step numbers say where you are; the hover readout still names every token.
        self._token_mode = self.step < SPARSE_STEP or hi - lo < LONG_SPAN
        if not self._token_mode:
            if self.orientation in ("bottom", "top"):
                needed = self._measured.width(self, str(hi)) + GAP
            self.step = label_step(needed, per_cell)
        self.shown = labelled(lo, hi, self.step)
        return [(float(self.step), [i + 0.5 for i in self.shown])]

    def tickStrings(self, values, scale, spacing):  # noqa: N802
        index = [int(round(v - 0.5)) for v in values]
        if not self._token_mode:
            return [str(i) if 0 <= i < len(self.tokens) else "" for i in index]
        return [show_token(self.tokens[i], LABEL_CHARS) if 0 <= i < len(self.tokens) else "" for i in index]

    def grew(self, n: int) -> None:
        """The run has n tokens now: draw the axis again when a new token lands on a labelled place
        inside the view (not at every step: laying out the texts costs a millisecond or more)."""
        if self.step and n > 0:
            last = n - 1
            if (
                last % self.step == 0
                and last not in self.shown
                and self._range[0] <= last + 0.5 <= self._range[1]
            ):
                self.picture = None
                self.update()


class UnitAxis(PixmapAxis):
    """The unit axis of a units x steps heatmap: row r shows unit order[r]; as many labels as fit."""

    def __init__(self, orientation: str = "left", **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self.order = np.zeros(0, dtype=np.intp)
        self.step = 0
        self.shown: list[int] = []  # rows labelled in the picture drawn last
        self._measured = _Measured()

    def set_order(self, order: np.ndarray) -> None:
        if len(order) == len(self.order) and np.array_equal(order, self.order):
            return
        self.order = np.asarray(order).copy()
        self.picture = None
        self.update()

    def tickValues(self, minVal, maxVal, size):  # noqa: N802
        minVal, maxVal = sorted((minVal, maxVal))
        n = len(self.order)
        lo, hi = max(math.ceil(minVal - 0.5), 0), min(math.floor(maxVal - 0.5), n - 1)
        if n == 0 or hi < lo or size <= 0 or maxVal <= minVal:
            self.step, self.shown = 0, []
            return []
        needed = self._measured.metrics(self).height() + 1
        self.step = label_step(needed, size / (maxVal - minVal))
        self.shown = labelled(lo, hi, self.step)
        return [(float(self.step), [r + 0.5 for r in self.shown])]

    def tickStrings(self, values, scale, spacing):  # noqa: N802
        rows = [int(round(v - 0.5)) for v in values]
        return [str(int(self.order[r])) if 0 <= r < len(self.order) else "" for r in rows]


def replace_axis(heatmap: Heatmap, side: str, axis: pg.AxisItem) -> pg.AxisItem:
    """Put `axis` on one side of a heatmap's plot, keeping that side's label."""
    old = heatmap.plot.getAxis(side)
    label = old.labelText
    heatmap.plot.setAxisItems({side: axis})
    axis.setLabel(label)
    return axis
