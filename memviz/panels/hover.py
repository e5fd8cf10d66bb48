"""What is under the mouse in a panel: one line below its canvas, and the canvas' tooltip.

A panel explains itself in its (fixed) tooltip. Over a graphics view Qt asks the items for a tooltip
when the mouse rests and, finding none, shows the panel's explanation, which then replaced the live
value under the cursor. The readout answers that request itself wherever something is hovered, and
writes the same value as one line under the canvas (readable while the mouse moves). The work
happens on mouse moves only: nothing here runs at a step.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QPointF, Qt
from PySide6.QtWidgets import QToolTip, QWidget

from memviz.panels.heatmap import GraphicsPanel, Heatmap
from memviz.panels.live_label import LiveLabel

#: scene position -> (one-line readout, tooltip), or None when nothing is there
Source = Callable[[QPointF], tuple[str, str] | None]


def heatmap_source(heatmap: Heatmap, line: Callable[[int, int, float], str]) -> Source:
    """A source over a heatmap's cells: `line(row, col, value)` and the heatmap's own tooltip."""

    def source(scene_pos: QPointF) -> tuple[str, str] | None:
        if not heatmap.plot.vb.sceneBoundingRect().contains(scene_pos):
            return None
        cell = heatmap.cell_at_scene(scene_pos)
        if cell is None:
            return None
        row, col = cell
        return line(row, col, heatmap.value_at(row, col)), heatmap.tooltip_at(row, col)

    return source


class HoverReadout(QObject):
    """The hover line of a GraphicsPanel (below its canvas) and the live tooltip of its canvas."""

    def __init__(self, panel: GraphicsPanel, hint: str = "hover for values") -> None:
        super().__init__(panel)
        self.panel = panel
        self.hint = hint
        self.sources: list[Source] = []
        self.text = ""  # the readout line now ("" when nothing is hovered)
        self.tooltip = ""
        self.label = LiveLabel(hint)
        self.label.setObjectName("hoverReadout")
        self.label.setAlignment(Qt.AlignmentFlag.AlignLeft)
        self.label.setContentsMargins(6, 0, 6, 0)
        panel.layout().addWidget(self.label)
        panel.canvas.scene().sigMouseMoved.connect(self.moved)
        panel.canvas.viewport().installEventFilter(self)

    def add(self, source: Source) -> None:
        self.sources.append(source)

    def moved(self, scene_pos: QPointF) -> None:
        for source in self.sources:
            found = source(scene_pos)
            if found is not None:
                self.text, self.tooltip = found
                self.label.setText(self.text)
                return
        self.clear()

    def clear(self) -> None:
        self.text = self.tooltip = ""
        self.label.setText(self.hint)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        kind = event.type()
        if kind == QEvent.Type.ToolTip:
            # from the resting point itself: pyqtgraph's scene drops moves faster than its rate limit
            self.moved(self.panel.canvas.mapToScene(event.pos()))
        if kind == QEvent.Type.ToolTip and self.tooltip:
            # the value under the mouse, not the panel's explanation
            QToolTip.showText(
                event.globalPos(), self.tooltip, watched if isinstance(watched, QWidget) else None
            )
            return True
        if kind == QEvent.Type.Leave:
            self.clear()
        return False
