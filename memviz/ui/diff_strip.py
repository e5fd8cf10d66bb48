"""The diff strip, under the token strip while two runs are compared: each token tinted by B - A of
log p of the token that actually came next (memviz.panels.compare_strip's numbers: the traces' own
`target_logprob`), on a diverging scale centred on 0 (red: B more sure of the next token, blue: less),
the scale drawn beside the title. Hover for the numbers, click to go to a step.

It shows the steps both runs have read with the same tokens (the run on screen may still be reading:
an intervention's re-read) and hides itself when there is no comparison.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QLinearGradient, QPainter, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QScrollArea, QToolTip, QVBoxLayout, QWidget

from memviz.core.trace import Trace
from memviz.core.trace_diff import TraceDiff
from memviz.core.view import ViewState
from memviz.panels import colormaps
from memviz.panels.compare_strip import logprobs, shared_steps
from memviz.panels.token_labels import live_labels
from memviz.panels.view_model import ViewModel
from memviz.ui.token_layout import StripLayout
from memviz.ui.token_signals import display_text


def diverging_colour(value: float, level: float) -> QColor:
    """`value` on the diverging map over [-level, level] (RdBu: blue below 0, red above)."""
    table = colormaps.lookup_table(colormaps.DIVERGING)
    x = 0.5 + 0.5 * max(-1.0, min(1.0, value / level)) if level > 0 else 0.5
    r, g, b, a = (int(v) for v in table[min(len(table) - 1, int(x * (len(table) - 1) + 0.5))])
    return QColor(r, g, b, a)


def text_colour(fill: QColor) -> QColor:
    """Dark text on light tints, light on dark (the map's ends)."""
    luma = 0.299 * fill.red() + 0.587 * fill.green() + 0.114 * fill.blue()
    return QColor("#111111") if luma > 140 else QColor("#f4f4f4")


class DiffStrip(QWidget, StripLayout):
    """Token boxes in lines (the token strip's lay-out), each filled with its B - A colour."""

    token_clicked = Signal(int)

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.state = view.state
        self.trace: TraceDiff | None = None  # its len: the steps compared; its tokens: B's
        self.source: Trace | None = None  # B, carrying A as its baseline
        self._rects: list[QRect] = []
        self._line_tops: list[int] = []
        self._line_start = 0
        self._laid_width = -1
        self._labels = ()
        self._widths: dict[str, int] = {}
        self.logp_a = self.logp_b = self.diff = np.zeros(0)
        self.level = 1.0  # |B - A| at the ends of the scale (nats)
        self.setMouseTracking(True)
        self._apply_font()

    def set_trace(self, trace: Trace | None) -> None:
        """B with its baseline A (None or no baseline: nothing to show)."""
        self.source = trace
        baseline = getattr(trace, "baseline", None)
        self.trace = TraceDiff(baseline, trace) if trace is not None and baseline is not None else None
        self._labels = live_labels(trace)
        self._relayout()
        self.update()

    def refresh(self) -> None:
        """Read the numbers again (new steps): B - A of log p of the next token."""
        trace = self.source
        n = shared_steps(trace) if trace is not None else 0
        if trace is None or n == 0:
            self.logp_a = self.logp_b = self.diff = np.zeros(0)
            return
        self.logp_a, self.logp_b = logprobs(trace.baseline, n), logprobs(trace, n)
        self.diff = self.logp_b - self.logp_a
        finite = np.abs(self.diff[np.isfinite(self.diff)])
        self.level = colormaps.symmetric_level(finite, floor=1e-3) if finite.size else 1.0

    def render(self, state: ViewState) -> None:
        if state.theme != self.state.theme:
            self.state = state
            self._apply_font()
            self._relayout()
        self.state = state
        self.refresh()
        self._extend_layout()
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(600, max(self.minimumHeight(), 40))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        if event.size().width() != self._laid_width:
            self._relayout()

    def colour_of(self, index: int) -> QColor | None:
        """The tint of a step (None where B - A is not known: the last step, no next token)."""
        if index >= len(self.diff) or not math.isfinite(self.diff[index]):
            return None
        return diverging_colour(float(self.diff[index]), self.level)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        theme = self.state.theme_obj
        painter.fillRect(event.rect(), QColor(theme.panel_background))
        if not self._rects:
            painter.end()
            return
        line_height = self._rects[0].height() + 2
        lo = bisect.bisect_left(self._line_tops, event.rect().top() - line_height)
        hi = min(bisect.bisect_right(self._line_tops, event.rect().bottom()), len(self._rects))
        foreground = QColor(theme.foreground)
        top = self.PAD_Y + self._metrics.ascent() - 1
        painter.setFont(self.font())
        for i in range(lo, hi):
            rect = self._rects[i]
            fill = self.colour_of(i)
            if fill is not None:
                painter.fillRect(rect, fill)
            painter.setPen(text_colour(fill) if fill is not None else foreground)
            painter.drawText(rect.left() + self.PAD_X, rect.top() + top, display_text(self._labels[i]))
        cursor = self.state.cursor
        if 0 <= cursor < len(self._rects):
            painter.setPen(QPen(QColor(theme.accent), 2))
            painter.setBrush(Qt.NoBrush)
            painter.drawRect(self._rects[cursor].adjusted(0, 0, -1, -1))
        painter.end()

    def tooltip_text(self, index: int) -> str:
        labels = self._labels
        head = f"step {index} {labels[index]!r}"
        if index >= len(self.diff) or not math.isfinite(self.diff[index]):
            return f"{head}\nnext token not known (the last step)"
        return (
            f"{head} \u2192 next {labels[index + 1]!r}\n"
            f"log p in A = {self.logp_a[index]:.4f}\nlog p in B = {self.logp_b[index]:.4f}\n"
            f"B \u2212 A = {self.diff[index]:+.4f} nats"
        )

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        index = self.index_at(event.position().toPoint())
        if event.button() == Qt.LeftButton and index is not None:
            self.token_clicked.emit(index)
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt's name
        index = self.index_at(event.position().toPoint())
        if index is None:
            QToolTip.hideText()
        else:
            QToolTip.showText(event.globalPosition().toPoint(), self.tooltip_text(index), self)
        super().mouseMoveEvent(event)


class ScaleBar(QWidget):
    """The diverging scale: -level .. 0 .. +level nats, blue to red."""

    def __init__(self, strip: DiffStrip, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.strip = strip
        self.setMinimumWidth(220)
        self.setFixedHeight(strip.fontMetrics().height() + 8)

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        theme = self.strip.state.theme_obj
        level = self.strip.level
        metrics = painter.fontMetrics()
        left_text, right_text = f"\u2212{level:g}", f"+{level:g}"
        left = metrics.horizontalAdvance(left_text) + 6
        right = self.width() - metrics.horizontalAdvance(right_text) - 6
        bar = QRect(left, 3, max(right - left, 10), self.height() - 6)
        gradient = QLinearGradient(bar.left(), 0, bar.right(), 0)
        for x in np.linspace(0.0, 1.0, 11):
            gradient.setColorAt(float(x), diverging_colour((2 * x - 1) * level, level))
        painter.fillRect(bar, gradient)
        painter.setPen(QColor(theme.foreground))
        painter.drawLine(bar.center().x(), bar.top() - 2, bar.center().x(), bar.bottom() + 2)
        middle = bar.top() + (bar.height() + metrics.ascent() - metrics.descent()) // 2
        painter.drawText(2, middle, left_text)
        painter.drawText(bar.right() + 4, middle, right_text)
        painter.end()


class DiffStripView(QWidget):
    """The title, the scale and the strip (scrolled to the cursor); hidden without a comparison."""

    MAX_LINES = 4

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("diffStrip")
        self.strip = DiffStrip(view)
        self.title = QLabel()
        self.title.setObjectName("diffStripTitle")
        self.scale = ScaleBar(self.strip)
        header = QHBoxLayout()
        header.setContentsMargins(6, 2, 6, 0)
        header.setSpacing(12)
        header.addWidget(self.title, 1)
        header.addWidget(QLabel("B \u2212 A (nats):"))
        header.addWidget(self.scale)
        self.area = QScrollArea()
        self.area.setWidget(self.strip)
        self.area.setWidgetResizable(True)
        self.area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(header)
        layout.addWidget(self.area)
        self._styled = ""  # the theme the header was styled for
        self._fit_height()
        self.hide()

    def _fit_height(self) -> None:
        """As high as its lines, up to MAX_LINES (then it scrolls with the cursor)."""
        strip = self.strip
        line = strip._metrics.height() + 2 * strip.PAD_Y
        lines = max(1, len(set(strip._line_tops))) if strip._line_tops else 1
        content = line * min(lines, self.MAX_LINES) + 2 * strip.MARGIN
        height = min(content, max(strip.minimumHeight(), line)) + 2 * self.area.frameWidth()
        if self.area.height() != height:
            self.area.setFixedHeight(height)

    @property
    def active(self) -> bool:
        return self.strip.trace is not None

    def set_trace(self, trace: Trace | None) -> None:
        self.strip.set_trace(trace)
        if self.active:
            a, b = trace.baseline, trace
            names = (a.model.get("name", "?"), b.model.get("name", "?"))
            self.title.setText(
                f"log p of the next token, B \u2212 A   A: {describe(a, names[0])}   B: {describe(b, names[1])}"
            )
        self.setVisible(self.active)

    def render(self, state: ViewState) -> None:
        if not self.active:
            return
        self.strip.render(state)
        self._fit_height()
        if state.theme != self._styled:
            self._styled = state.theme
            theme = state.theme_obj
            self.setStyleSheet(
                f"#diffStrip, #diffStrip QLabel {{ background: {theme.panel_background}; "
                f"color: {theme.foreground}; }}"
            )
        self.scale.update()
        if 0 <= state.cursor < len(self.strip._rects):
            rect = self.strip._rects[state.cursor]
            self.area.ensureVisible(rect.center().x(), rect.center().y(), 20, rect.height() // 2 + 4)


def describe(trace: Trace, name: str) -> str:
    """A run's name with how it was made (its interventions), for the title."""
    specs = trace.extra_manifest.get("interventions") or []
    made = ", ".join(str(s.get("spec", s)) if isinstance(s, dict) else str(s) for s in specs)
    return f"{name} ({made})" if made else name


def under(top: QWidget, strip: DiffStripView) -> QWidget:
    """`top` (the token strip) with the diff strip right below it, in one widget."""
    box = QWidget()
    box.setObjectName("tokenStrips")
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    layout.addWidget(top, 1)
    layout.addWidget(strip, 0)
    return box
