"""LiveLabel: a label for text that changes at every step (panel notes, the status bar).

QLabel.setText asks the parent layout to re-lay out whenever its text changes, and that request
climbs to the dock and the main window: at every step the docks recomputed their geometry and
reloaded their title-bar icons, about a millisecond and a half of each frame. A LiveLabel repaints
itself and asks for a new layout only when its text needs more room than it has reserved. The room
only grows, so a counter ("step 999" -> "step 1000") does not make its neighbours jump either.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

ELIDED_MIN_WIDTH = 40  # a narrow dock may squeeze the label to this; the text is elided then


class LiveLabel(QLabel):
    """Single-line plain text, drawn by the label itself and elided on the right when squeezed.

    A QLabel subclass so that style sheets written for QLabel (colour, font size) apply to it.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        self._room = 0  # width reserved for text, in pixels; grows, never shrinks
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.setText(text)

    def text(self) -> str:  # noqa: D102 - QLabel's meaning
        return self._text

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        text = str(text)
        if text == self._text:
            return
        self._text = text
        self.setAccessibleName(text)  # QLabel's own text stays empty: screen readers read this
        needed = self.fontMetrics().horizontalAdvance(text)
        if needed > self._room:
            self._room = needed
            self.updateGeometry()
        self.update()

    def _forget_room(self) -> None:
        self._room = self.fontMetrics().horizontalAdvance(self._text)
        self.updateGeometry()
        self.update()

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().changeEvent(event)
        if event.type() in (event.Type.FontChange, event.Type.StyleChange):
            self._forget_room()  # the text's width in the new font

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        margins = self.contentsMargins()
        return QSize(
            self._room + 2 * self.margin() + margins.left() + margins.right() + 2,
            self.fontMetrics().height() + 2 * self.margin() + margins.top() + margins.bottom(),
        )

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        hint = self.sizeHint()
        return QSize(min(hint.width(), ELIDED_MIN_WIDTH), hint.height())

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt's name
        if not self._text:
            return
        painter = QPainter(self)
        rect = self.contentsRect().adjusted(self.margin(), self.margin(), -self.margin(), -self.margin())
        text = self.fontMetrics().elidedText(self._text, Qt.TextElideMode.ElideRight, rect.width())
        tip = self._text if text != self._text else ""  # the whole text, when it is cut
        if self.toolTip() != tip:
            self.setToolTip(tip)
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(
            rect,
            int(self.alignment() | Qt.AlignmentFlag.AlignVCenter) | int(Qt.TextFlag.TextSingleLine),
            text,
        )
