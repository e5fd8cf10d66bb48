"""The unit axis of the LSTM panels' units x steps heatmaps: units sorted, and zoomed with the wheel.

256 units in a 130-pixel heatmap are half a pixel each: a click picked a unit at random. A panel
can sort its rows (by unit number, or by a quantity the panel names, e.g. the variance of f over
the run or c at the cursor) and the mouse wheel over a heatmap zooms its unit axis (the steps keep
following the run; a drag pans the units; a double click shows every unit again). Row r of every
heatmap of the panel shows unit `order[r]`: the row box, the clicks, the tooltips and the axis'
labels all go through that mapping, so a click selects the unit drawn in the row clicked.

The default order is the unit number: the heatmaps then hold the trace's arrays as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QComboBox, QLabel

from memviz.panels.heatmap import GraphicsPanel, Heatmap
from memviz.panels.token_axis import UnitAxis, replace_axis

BY_NUMBER = "unit number"
MIN_ROWS = 4  # the wheel zooms in to this many units at most


class UnitRows(QObject):
    """Order and zoom of the unit rows shared by a panel's heatmaps."""

    def __init__(
        self,
        panel: GraphicsPanel,
        heatmaps: list[Heatmap],
        sort_keys: dict[str, Callable[[int, int], np.ndarray]],
        changed: Callable[[], None],
    ) -> None:
        """`sort_keys`: label -> key(layer, t) giving one number per unit (rows sorted by it, the
        largest on top); `changed` is called when the user picks another order (the panel draws again)."""
        super().__init__(panel)
        self.heatmaps = heatmaps
        self.sort_keys = sort_keys
        self.sort = BY_NUMBER
        self.order = np.zeros(0, dtype=np.intp)  # row -> unit
        self.row_of = np.zeros(0, dtype=np.intp)  # unit -> row
        self.zoom: tuple[float, float] | None = None  # unit rows in view (y range), None: all
        self._changed = changed
        self._selected = -1
        self._adjusting = False
        self.axes = [replace_axis(heatmap, "left", UnitAxis("left")) for heatmap in heatmaps]
        label = QLabel("sort")
        self.combo = QComboBox()
        self.combo.addItems([BY_NUMBER, *sort_keys])
        self.combo.setToolTip(
            "Order of the unit rows (the largest on top). The wheel over a heatmap zooms the units."
        )
        self.combo.currentTextChanged.connect(self.set_sort)
        at = max(panel.controls.count() - 2, 0)  # before the stretch and the note (finish_controls)
        panel.controls.insertWidget(at, label)
        panel.controls.insertWidget(at + 1, self.combo)
        first = heatmaps[0].plot.getViewBox()
        for heatmap in heatmaps:
            vb = heatmap.plot.getViewBox()
            vb.setMouseEnabled(x=False, y=True)  # the wheel and a drag act on the units only
            if vb is not first:
                vb.setYLink(first)
            vb.sigRangeChangedManually.connect(lambda *_args, h=heatmap: self._user_zoomed(h))
            heatmap.plot.scene().sigMouseClicked.connect(self._clicked)

    # -- order --------------------------------------------------------------------------------
    def set_sort(self, sort: str) -> None:
        if sort != self.sort:
            self.sort = sort
            if self.combo.currentText() != sort:
                self.combo.setCurrentText(sort)
            self._changed()

    def set_sort_keys(self, sort_keys: dict[str, Callable[[int, int], np.ndarray]]) -> None:
        """Other sort keys (another cell's quantities): a sort by a key that is gone goes by number."""
        if list(sort_keys) == list(self.sort_keys):
            self.sort_keys = sort_keys
            return
        position = list(self.sort_keys).index(self.sort) if self.sort in self.sort_keys else -1
        self.sort_keys = sort_keys
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems([BY_NUMBER, *sort_keys])
        # the same place in the list: "f now" becomes "z now"
        self.sort = list(sort_keys)[position] if 0 <= position < len(sort_keys) else BY_NUMBER
        self.combo.setCurrentText(self.sort)
        self.combo.blockSignals(False)
        self.order = np.zeros(0, dtype=np.intp)  # drawn again in the new order

    def update(self, layer: int, t: int, units: int) -> bool:
        """The order at this layer and step; True when it differs from the one shown before."""
        if self.sort == BY_NUMBER or self.sort not in self.sort_keys:
            order = np.arange(units)
        else:
            key = np.asarray(self.sort_keys[self.sort](layer, t), dtype=np.float64)
            # rows count up from the bottom: ascending puts the largest on top (ties by unit number)
            order = np.argsort(np.nan_to_num(key, nan=-np.inf), kind="stable")
        if len(order) == len(self.order) and np.array_equal(order, self.order):
            return False
        self.order = order
        self.row_of = np.empty_like(order)
        self.row_of[order] = np.arange(len(order))
        for axis in self.axes:
            axis.set_order(order)
        for heatmap in self.heatmaps:
            heatmap.plot.getViewBox().setLimits(yMin=0, yMax=units, minYRange=min(MIN_ROWS, units))
        return True

    @property
    def sorted(self) -> bool:
        return len(self.order) > 0 and not np.array_equal(self.order, np.arange(len(self.order)))

    def rows(self, data: np.ndarray) -> np.ndarray:
        """data [units, ...] in row order (the array itself when unsorted)."""
        return data[self.order] if self.sorted else data

    def unit_at(self, row: int) -> int:
        return int(self.order[row]) if 0 <= row < len(self.order) else row

    def row_of_unit(self, unit: int) -> int:
        return int(self.row_of[unit]) if 0 <= unit < len(self.row_of) else unit

    # -- zoom ---------------------------------------------------------------------------------
    def _user_zoomed(self, heatmap: Heatmap) -> None:
        if self._adjusting:
            return
        heatmap.following = True  # a zoom of the units: the steps still follow the run
        y0, y1 = heatmap.plot.getViewBox().viewRange()[1]
        units = len(self.order)
        self.zoom = None if units and y0 <= 0 and y1 >= units else (y0, y1)

    def _clicked(self, event) -> None:
        if event.double():
            self.zoom = None  # the heatmap shows all of its data again

    def show_rows(self, unit: int) -> None:
        """After the heatmaps took new data: keep the zoom (the steps' extent may have reset it) and
        bring the selected unit into view when it changed."""
        if self.zoom is None:
            self._selected = unit
            return
        y0, y1 = self.zoom
        row = self.row_of_unit(unit)
        if unit != self._selected and not (y0 <= row + 0.5 <= y1):
            span = y1 - y0
            y0 = min(max(row + 0.5 - span / 2, 0.0), max(len(self.order) - span, 0.0))
            y1 = y0 + span
            self.zoom = (y0, y1)
        self._selected = unit
        vb = self.heatmaps[0].plot.getViewBox()
        if vb.viewRange()[1] != [y0, y1]:
            self._adjusting = True
            try:
                vb.setYRange(y0, y1, padding=0.0)
            finally:
                self._adjusting = False

    def zoom_to(self, first_row: float, last_row: float) -> None:
        """Show rows first_row..last_row (as a wheel zoom would)."""
        self.zoom = (float(first_row), float(last_row))
        self.show_rows(self._selected)
