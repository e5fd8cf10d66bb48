"""The token strip's legend: what tints the strip and its colour scale, or each label's colour."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QPainter, QPixmap
from PySide6.QtWidgets import QWidget

from memviz.core.view import ViewState
from memviz.panels.prediction import labels_of as class_labels
from memviz.ui.token_signals import SIGNALS, scale_text, tint_scale
from memviz.ui.token_widget import TokenStrip


class TokenLegend(QWidget):
    """What tints the strip, and its colour scale from one end value to the other (the strip's own
    tint colours over the panel's background)."""

    BAR_WIDTH = 120

    def __init__(self, strip: TokenStrip, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.strip = strip
        self.setObjectName("tokenStripLegend")
        self.label = ""
        self.scale: tuple[float, float] | None = None
        self.swatches: list[tuple[str, QColor]] = []  # several labels' colours (the prediction tint)
        self._bar: tuple[tuple | None, QPixmap | None] = (None, None)  # (look, the colour scale drawn)

    def describe(self, state: ViewState, values: np.ndarray) -> bool:
        """Take the signal and its values; True when the legend changed."""
        label = SIGNALS.get(state.signal, (state.signal, ""))[0]
        if state.signal == "attention":
            label += f" (layer {state.layer}, head {state.head}; colour: square root of the weight)"
        elif state.signal in ("unit", "cell"):
            label += f" (layer {state.layer}, unit {state.unit})"
        elif state.signal == "memory":
            label += " (best score at each step, lowest to highest of the run)"
        labels = self.strip.label_count()
        swatches: list[tuple[str, QColor]] = []
        if state.signal == "prediction":
            names = class_labels(self.strip.trace) if self.strip.trace is not None else []
            if labels > 1:
                label += " after each token: the likeliest label, stronger the surer"
                swatches = [(n, self.strip._tint(1.0, k)) for k, n in enumerate(names)]
            else:
                name = names[0] if names else "label"
                label += f" after each token: p({name}), untinted at 0.5, blue above, red below"
        scale = tint_scale(values, state.signal, labels)
        if (label, scale, [n for n, _ in swatches]) == (
            self.label,
            self.scale,
            [n for n, _ in self.swatches],
        ):
            return False
        self.label, self.scale, self.swatches = label, scale, swatches
        self.update()
        return True

    def ends(self) -> tuple[float, float]:
        """The tint strengths at the two ends of the bar."""
        kind = SIGNALS.get(self.strip.state.signal, ("", "none"))[1]
        if kind == "prediction":
            return (-1.0, 1.0) if self.strip.label_count() == 1 else (0.0, 1.0)
        return (-1.0, 1.0) if kind == "diverging" else (0.0, 1.0)

    def _bar_pixmap(self, width: int, height: int) -> QPixmap:
        """The colour scale: one column a tint strength from one end to the other, in the strip's
        own tint colours over the panel's background. Drawn once per look (120 fills cost a
        millisecond or two at every paint, and a scrub repaints the legend)."""
        theme = self.strip.state.theme_obj
        low, high = self.ends()
        ratio = self.devicePixelRatioF()
        key = (width, height, ratio, low, high, theme.name, theme.panel_background, self.strip.state.signal)
        if self._bar[0] == key:
            return self._bar[1]
        pixmap = QPixmap(round(width * ratio), round(height * ratio))
        pixmap.setDevicePixelRatio(ratio)
        pixmap.fill(QColor(theme.panel_background))
        painter = QPainter(pixmap)
        for k in range(width):
            strength = low + (high - low) * k / max(width - 1, 1)
            painter.fillRect(QRect(k, 0, 1, height), self.strip._tint(strength))
        painter.end()
        self._bar = (key, pixmap)
        return pixmap

    def end_texts(self) -> tuple[str, str]:
        if self.scale is None:
            return "", ""
        return scale_text(self.scale[0]), scale_text(self.scale[1])

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        theme = self.strip.state.theme_obj
        painter.fillRect(self.rect(), QColor(theme.panel_background))
        painter.setPen(QColor(theme.foreground))
        metrics = painter.fontMetrics()
        x = 6
        middle = self.height() // 2
        baseline = middle + metrics.ascent() // 2 - 1
        if self.scale is None:
            painter.drawText(
                x,
                baseline,
                "tint: none" if self.label == SIGNALS["none"][0] else f"tint: {self.label}: no values",
            )
            painter.end()
            return
        if self.swatches:  # several labels: each one's colour, named (the tint's strength: how sure)
            self._paint_swatches(painter, x, middle, baseline)
            painter.end()
            return
        lo_text, hi_text = self.end_texts()
        painter.drawText(x, baseline, lo_text)
        x += metrics.horizontalAdvance(lo_text) + 4
        bar = QRect(x, middle - 5, self.BAR_WIDTH, 10)
        painter.drawPixmap(bar.topLeft(), self._bar_pixmap(bar.width(), bar.height()))
        painter.setPen(QColor(theme.foreground))
        painter.setBrush(Qt.NoBrush)
        painter.drawRect(bar.adjusted(0, 0, -1, -1))
        x = bar.right() + 5
        painter.drawText(x, baseline, hi_text)
        x += metrics.horizontalAdvance(hi_text) + 10
        rest = self.width() - x - 4
        painter.drawText(x, baseline, metrics.elidedText(f"tint: {self.label}", Qt.ElideRight, max(rest, 0)))
        painter.end()

    def _paint_swatches(self, painter: QPainter, x: int, middle: int, baseline: int) -> None:
        metrics = painter.fontMetrics()
        foreground = QColor(self.strip.state.theme_obj.foreground)
        for name, colour in self.swatches:
            box = QRect(x, middle - 5, 10, 10)
            painter.fillRect(box, colour)
            painter.setPen(foreground)
            painter.drawRect(box.adjusted(0, 0, -1, -1))
            x = box.right() + 4
            painter.drawText(x, baseline, name)
            x += metrics.horizontalAdvance(name) + 10
        rest = self.width() - x - 4
        painter.drawText(x, baseline, metrics.elidedText(f"tint: {self.label}", Qt.ElideRight, max(rest, 0)))
