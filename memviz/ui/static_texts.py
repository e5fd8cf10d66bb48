"""Texts laid out once: a QStaticText per distinct string, for views that draw many short texts."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetricsF, QStaticText, QTransform


class StaticTexts:
    """QStaticText per string for one font: laid out once, then drawn without text layout. Texts
    wider than `max_width` pixels (when set) are elided."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit  # distinct texts kept (texts change from step to step: a bound, then a fresh start)
        self.font = QFont()
        self.max_width: float | None = None
        self._metrics = QFontMetricsF(self.font)
        self._texts: dict[str, QStaticText] = {}

    def set_font(self, font: QFont, max_width: float | None = None) -> None:
        self.font = QFont(font)
        self.max_width = max_width
        self._metrics = QFontMetricsF(self.font)
        self._texts.clear()

    def get(self, text: str) -> QStaticText:
        static = self._texts.get(text)
        if static is None:
            if len(self._texts) >= self.limit:
                self._texts.clear()
            shown = text
            if self.max_width is not None and self._metrics.horizontalAdvance(text) > self.max_width:
                shown = self._metrics.elidedText(text, Qt.TextElideMode.ElideRight, self.max_width)
            static = QStaticText(shown)
            static.setTextFormat(Qt.TextFormat.PlainText)
            static.prepare(QTransform(), self.font)
            self._texts[text] = static
        return static
