"""A units x steps heatmap whose columns may each stand for a bin of steps (step_pool's overview).

Positions, hovers, clicks, the cursor and the view are in steps, as with one column a step: a
column of `bin_steps` steps is drawn over those steps (the last, partial bin over the steps it has), and
a hover names the step under the mouse and its exact value (`value_fn`, the trace's own number),
not the bin's mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import QPointF, QRectF

from memviz.panels.heatmap_image import CellImage
from memviz.panels.heatmap_item import Heatmap


class StepCellImage(CellImage):
    """Cells whose columns are `bin_steps` steps wide; the image covers `steps` steps (item units)."""

    def __init__(self, owner) -> None:
        super().__init__(owner)
        self.bin_steps = 1
        self.steps = 0
        self.bounds = (0, 0)  # rows, steps: the bounding rect, grown in powers of two

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt's name
        return QRectF(0, 0, self.bounds[1], self.bounds[0])

    def show_cells(self, rows: int, cols: int, changed: tuple[int, int] | None = None) -> None:
        """A new step repaints the cells coloured again (a column or two), not the whole heatmap: the
        bounding rect grows in powers of two (a geometry change repaints all), so it rarely changes."""
        self.cells = (rows, cols)
        steps = self.steps if self.bin_steps > 1 else cols
        bounds = (rows, 1 << max(steps - 1, 0).bit_length()) if rows and cols else (0, 0)
        if bounds != self.bounds:
            self.prepareGeometryChange()
            self.bounds = bounds
            self.update()
            return
        if changed is None:
            self.update()
            return
        kr, kc = changed
        width, b = bounds[1], self.bin_steps
        if kr < rows:
            self.update(QRectF(0, kr, width, rows - kr))
        if kc * b < width:  # from the first column coloured again to the end (it may have shrunk)
            self.update(QRectF(kc * b, 0, width - kc * b, rows))

    def paint(self, painter, *args) -> None:
        rows, cols = self.cells
        if self.bin_steps == 1 or not rows or not cols or self.qimage is None:
            super().paint(painter, *args)
            return
        b = self.bin_steps
        full = min(cols, self.steps // b)
        if full:
            painter.drawImage(QRectF(0, 0, full * b, rows), self.qimage, QRectF(0, 0, full, rows))
        if cols > full:  # the partial bin: the steps from its start to the cursor
            width = self.steps - full * b
            painter.drawImage(QRectF(full * b, 0, width, rows), self.qimage, QRectF(full, 0, 1, rows))


class StepHeatmap(Heatmap):
    """A Heatmap over steps (x) whose data columns are bins of `bin_steps` steps (1: a step each)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.plot.removeItem(self.image)
        self.image = StepCellImage(self)
        self.plot.addItem(self.image)
        self.image.setZValue(-1)  # under the cursor line and the row box
        self.bin_steps = 1
        self.steps = 0
        self.value_fn: Callable[[int, int], float] | None = None  # (row, step) -> the exact value

    def set_steps(self, data, steps: int, bin_steps: int, levels=None, keep=None) -> None:
        """Show `data` [rows, ceil(steps / bin_steps)]: column j the bin of steps j*bin_steps.. (the last
        up to `steps`). `keep` as Heatmap.set_data, in columns."""
        self.bin_steps = self.image.bin_steps = int(bin_steps)
        self.steps = self.image.steps = int(steps)
        self.set_data(data, levels=levels, keep=keep)

    def data_extent(self) -> tuple[int, int]:
        if self.bin_steps > 1 and self.data.ndim == 2 and self.data.size:
            return (self.data.shape[0], self.steps)
        return super().data_extent()

    def cell_at_item(self, pos: QPointF) -> tuple[int, int] | None:
        """(row, step) under an item position."""
        row, col = int(math.floor(pos.y())), int(math.floor(pos.x()))
        rows, cols = self.data_extent()
        if not (0 <= row < rows and 0 <= col < cols):
            return None
        return row, col

    def value_at(self, row: int, col: int) -> float:
        """The exact value at (row, step col): the data's own cell at one step a column."""
        if self.bin_steps == 1 or self.value_fn is None:
            return float(self.data[row, col // self.bin_steps])
        return float(self.value_fn(row, col))

    def shown_at(self, row: int, col: int) -> float:
        """What the cell drawn at (row, step col) shows: its bin's value (the mean, for a bin)."""
        return float(self.data[row, col // self.bin_steps])

    def tooltip_at(self, row: int, col: int) -> str:
        value = self.value_at(row, col)
        text = (
            self.tooltip_fn(row, col, value)
            if self.tooltip_fn is not None
            else f"row {row}, col {col}: {self.value_name} = {value:.4f}"
        )
        if self.bin_steps > 1:
            first = (col // self.bin_steps) * self.bin_steps
            last = min(first + self.bin_steps, self.steps) - 1
            text += f"\nshown: mean of steps {first}-{last} = {self.shown_at(row, col):.6f}"
        return text
