"""The token strip's lay-out: boxes flowing in lines, wrapped at word starts, extended token by
token as the trace grows; hit tests by line. A mixin for TokenStrip (a QWidget)."""

from __future__ import annotations

import bisect

from PySide6.QtCore import QPoint, QRect
from PySide6.QtGui import QFont, QFontMetrics

from memviz.ui.token_signals import display_text


def wrap_before(texts: list[str], start: int, index: int) -> int:
    """Where a line that starts at token `start` should break when token `index` does not fit: the
    first token of the word `index` belongs to (a word: tokens with no whitespace between them), or
    `index` itself when that word starts the line (a word longer than the line breaks inside)."""
    j = index
    while j > start and not (texts[j - 1][-1:].isspace() or texts[j][:1].isspace()):
        j -= 1
    return j if j > start else index


class StripLayout:
    """Where each token's box goes; the widget keeps `_rects`, `_line_tops`, `_labels` and the trace."""

    PAD_X = 0
    PAD_Y = 3
    MARGIN = 6

    # -- layout -------------------------------------------------------------------------------
    def _apply_font(self) -> None:
        theme = self.state.theme_obj
        font = QFont("DejaVu Sans Mono")
        font.setStyleHint(QFont.Monospace)
        font.setPointSize(theme.font_size + 2)
        self.setFont(font)
        self._metrics = QFontMetrics(font)
        self._widths.clear()

    def _text_width(self, text: str) -> int:
        width = self._widths.get(text)
        if width is None:
            width = self._widths[text] = max(self._metrics.horizontalAdvance(text), 4) + 2 * self.PAD_X
        return width

    def _relayout(self) -> None:
        self._rects.clear()
        self._line_tops.clear()
        self._line_start = 0
        self._laid_width = self.width()
        self._extend_layout()

    def _extend_layout(self) -> None:
        trace = self.trace
        n = 0 if trace is None else len(trace)
        if len(self._rects) > n:  # the trace was replaced by a shorter one
            self._rects.clear()
            self._line_tops.clear()
            self._line_start = 0
        if len(self._rects) == n:
            return
        line_height = self._metrics.height() + 2 * self.PAD_Y
        right = max(self.width(), 200) - self.MARGIN
        if self._rects:
            last = self._rects[-1]
            x, y = last.right() + 1, last.top()
            if self._labels[len(self._rects) - 1].endswith("\n"):
                x, y = self.MARGIN, y + line_height
        else:
            x, y = self.MARGIN, self.MARGIN
            self._line_start = 0
        texts = self._labels
        for i in range(len(self._rects), n):
            text = texts[i]
            width = self._text_width(display_text(text))
            if x + width > right and x > self.MARGIN and text.strip() == "" and "\n" not in text:
                width = max(right - x, 1)  # a space that does not fit ends its line (never starts the next)
            elif x + width > right and x > self.MARGIN:
                # wrap at the start of the word this token belongs to, moving its first tokens down
                start = self._line_start
                first = wrap_before(texts, start, i)
                x, y = self.MARGIN, y + line_height
                for j in range(first, i):
                    moved = self._rects[j]
                    self._rects[j] = QRect(x, y, moved.width(), moved.height())
                    self._line_tops[j] = y
                    x += moved.width()
                self._line_start = first
            self._rects.append(QRect(x, y, width, line_height - 2))
            self._line_tops.append(y)
            x += width
            if text.endswith("\n"):
                x, y = self.MARGIN, y + line_height
                self._line_start = i + 1
        bottom = (self._rects[-1].bottom() if self._rects else 0) + self.MARGIN + line_height
        if self.minimumHeight() != bottom:
            self.setMinimumHeight(bottom)

    def index_at(self, pos: QPoint) -> int | None:
        if not self._rects:
            return None
        line_height = self._rects[0].height() + 2
        lo = bisect.bisect_left(self._line_tops, pos.y() - line_height)
        hi = bisect.bisect_right(self._line_tops, pos.y())
        for i in range(lo, min(hi, len(self._rects))):
            if self._rects[i].contains(pos):
                return i
        return None
