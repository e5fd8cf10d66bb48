"""Texts laid out once: a QStaticText per distinct string, for views that draw many short texts."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetricsF, QStaticText, QTransform

from memviz.panels.fonts import needs_shaping, unshaped


class StaticTexts:
    """QStaticText per string for one font: laid out once, then drawn without text layout. Texts
    wider than `max_width` pixels (when set) are elided.

    Numbers and tokens change from step to step, so many texts are new at each paint: a text that
    needs no shaping (`needs_shaping`) is laid out in `unshaped`, the font without shaping, which
    is faster; others in `font`. Draw each in the font `entry` returns with it (a QStaticText drawn
    in another font is laid out again).
    """

    def __init__(self, limit: int = 4096) -> None:
        self.limit = (
            limit  # distinct texts kept (texts change from step to step: a bound, then a fresh start)
        )
        self._texts: dict[str, tuple[QStaticText, QFont]] = {}
        self.set_font(QFont())

    def set_font(self, font: QFont, max_width: float | None = None) -> None:
        self.font = QFont(font)
        self.unshaped = unshaped(font)
        self.max_width = max_width
        self._metrics = QFontMetricsF(self.font)
        self._texts.clear()

    def entry(self, text: str) -> tuple[QStaticText, QFont]:
        """The laid-out text and the font (`font` or `unshaped`) to draw it in."""
        found = self._texts.get(text)
        if found is None:
            if len(self._texts) >= self.limit:
                self._texts.clear()
            shown = text
            if self.max_width is not None and self._metrics.horizontalAdvance(text) > self.max_width:
                shown = self._metrics.elidedText(text, Qt.TextElideMode.ElideRight, self.max_width)
            font = self.font if needs_shaping(shown) else self.unshaped
            static = QStaticText(shown)
            static.setTextFormat(Qt.TextFormat.PlainText)
            static.prepare(QTransform(), font)
            found = self._texts[text] = (static, font)
        return found
