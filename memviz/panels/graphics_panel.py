"""The base of the panels drawn with pyqtgraph: a row of controls above one canvas that asks its
dock for the room its plots need, with the panel's heatmaps told the view's colour scale before each
render. Split out of heatmap.py (issue 14)."""

from __future__ import annotations

import functools
import math

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels.base import Panel
from memviz.panels.heatmap_item import Heatmap, heatmaps_of
from memviz.panels.live_label import LiveLabel
from memviz.panels.view_model import ViewModel


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
