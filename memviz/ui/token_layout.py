"""The token strip's lay-out: boxes flowing in lines, wrapped at word starts, extended token by
token as the trace grows; hit tests by line. A mixin for TokenStrip and DiffStrip (QWidgets).

Virtualised for long runs: a box is three numbers (x, width, line) in arrays, and a QRect is made
only for a box that is painted or asked for (`_rects[i]`). Lines are found a line at a time, not a
token at a time: a line from token s holds the tokens whose running width fits (one binary search
in the running sum of the widths), then the rules of the strip: a newline ends its line, a space
that does not fit ends its line (shrunk to the room left, never starting the next), any other
token that does not fit moves down with the rest of its word (`wrap_before`). At 50,000 tokens a
whole lay-out (a resize, a theme) takes milliseconds, and a new token re-lays the last line only.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QPoint, QRect
from PySide6.QtGui import QFont, QFontMetrics

from memviz.ui.token_signals import display_text


def wrap_before(texts: Sequence[str], start: int, index: int) -> int:
    """Where a line that starts at token `start` should break when token `index` does not fit: the
    first token of the word `index` belongs to (a word: tokens with no whitespace between them), or
    `index` itself when that word starts the line (a word longer than the line breaks inside)."""
    j = index
    while j > start and not (texts[j - 1][-1:].isspace() or texts[j][:1].isspace()):
        j -= 1
    return j if j > start else index


def _grown(array: np.ndarray, n: int) -> np.ndarray:
    """`array` with room for n entries (capacity doubles; the entries held are kept)."""
    if len(array) >= n:
        return array
    bigger = np.zeros(max(n, 2 * len(array), 1024), dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


class TokenRects:
    """The boxes as a read-only sequence of QRects, each made when asked for."""

    def __init__(self, layout: StripLayout) -> None:
        self.layout = layout

    def __len__(self) -> int:
        return self.layout._laid

    def __getitem__(self, index: int) -> QRect:
        layout = self.layout
        n = layout._laid
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(index)
        height = layout._line_height
        top = layout.MARGIN + int(layout._line[index]) * height
        return QRect(int(layout._x[index]), top, int(layout._w[index]), height - 2)


class LineTops:
    """The top of each box's line (sorted, so `bisect` finds a line's boxes)."""

    def __init__(self, layout: StripLayout) -> None:
        self.layout = layout

    def __len__(self) -> int:
        return self.layout._laid

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < self.layout._laid:
            raise IndexError(index)
        return self.layout.MARGIN + int(self.layout._line[index]) * self.layout._line_height


class StripLayout:
    """Where each token's box goes; the widget keeps `_labels` and the trace."""

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
        self._token_info: dict = {}  # token (bytes or text) -> (width, a space, ends a line)
        self._measured = 0  # the tokens' widths are measured again in the new font

    def _text_width(self, text: str) -> int:
        width = self._widths.get(text)
        if width is None:
            width = self._widths[text] = max(self._metrics.horizontalAdvance(text), 4) + 2 * self.PAD_X
        return width

    def _layout_state(self) -> None:
        """The arrays (made on first use: the widgets' own __init__ set older attributes)."""
        if getattr(self, "_layout_ready", False):
            return
        self._layout_ready = True
        self._measured = getattr(self, "_measured", 0)  # tokens whose width, flags and sum are known
        self._natural = np.zeros(0, np.int64)  # each token's own width
        self._cum = np.zeros(1, np.int64)  # running sum of the widths: _cum[k] = sum of widths < k
        self._space = np.zeros(0, bool)  # whitespace only, no newline: may shrink at a line's end
        self._newlines = np.zeros(0, np.int64)  # tokens that end with a newline (sorted)
        self._newline_count = 0
        self._x = np.zeros(0, np.int32)
        self._w = np.zeros(0, np.int32)
        self._line = np.zeros(0, np.int32)
        self._laid = 0  # tokens laid out
        self._firsts: list[int] = []  # the first token of each line
        self._frees: list[int] = []  # each line's tokens up to this one were placed without a check
        self._line_height = 1
        self._rects = TokenRects(self)
        self._line_tops = LineTops(self)

    def _relayout(self) -> None:
        self._layout_state()
        if self._labels is not getattr(self, "_measured_labels", None):  # another trace's tokens
            self._measured_labels = self._labels
            self._measured = self._newline_count = 0
        self._laid = 0
        self._firsts.clear()
        self._frees.clear()
        self._laid_width = self.width()
        self._extend_layout()

    def _measure(self, n: int) -> None:
        """Widths and flags of tokens up to n (new tokens, or all of them in a new font)."""
        start = self._measured
        if start >= n:
            return
        if start == 0:
            self._newline_count = 0
        texts = self._labels
        # a label is its token's bytes decoded (TokenLabels): measured once per distinct token, and
        # the other labels are not decoded (nor kept) until they are painted
        source = getattr(texts, "trace", None)
        raw = getattr(source, "token_bytes", None) if source is self.trace else None
        info = self._token_info
        rows = []
        for i in range(start, n):
            key = raw[i] if raw is not None else texts[i]
            row = info.get(key)
            if row is None:
                text = texts[i]
                row = info[key] = (
                    self._text_width(display_text(text)),
                    text.strip() == "" and "\n" not in text,
                    text.endswith("\n"),
                )
            rows.append(row)
        table = np.array(rows, dtype=np.int64).reshape(-1, 3)
        widths = table[:, 0]
        self._natural = _grown(self._natural, n)
        self._natural[start:n] = widths
        self._cum = _grown(self._cum, n + 1)
        self._cum[start + 1 : n + 1] = self._cum[start] + np.cumsum(widths)
        self._space = _grown(self._space, n)
        self._space[start:n] = table[:, 1].astype(bool)
        ends = start + np.flatnonzero(table[:, 2])
        if len(ends):
            self._newlines = _grown(self._newlines, self._newline_count + len(ends))
            self._newlines[self._newline_count : self._newline_count + len(ends)] = ends
            self._newline_count += len(ends)
        self._measured = n

    def _extend_layout(self) -> None:
        self._layout_state()
        trace = self.trace
        n = 0 if trace is None else len(trace)
        n = min(n, len(self._labels))
        if self._laid > n or self._measured > n:  # the trace was replaced by a shorter one
            self._laid = self._measured = self._newline_count = 0
            self._firsts.clear()
            self._frees.clear()
        if self._laid == n:
            return
        self._line_height = self._metrics.height() + 2 * self.PAD_Y
        if self._measured < self._laid:  # a new font: every width again, every line again
            self._laid = 0
            self._firsts.clear()
            self._frees.clear()
        self._measure(n)
        self._x = _grown(self._x, n)
        self._w = _grown(self._w, n)
        self._line = _grown(self._line, n)
        # the last line may change (its last word may move down): lay out again from its start
        start, free = (self._firsts.pop(), self._frees.pop()) if self._firsts else (0, 0)
        self._lay_out_lines(start, free, n)
        self._laid = n
        bottom = self.MARGIN + (len(self._firsts) - 1) * self._line_height + self._line_height - 3
        bottom += self.MARGIN + self._line_height
        if self.minimumHeight() != bottom:
            self.setMinimumHeight(bottom)

    def _lay_out_lines(self, s: int, free: int, n: int) -> None:
        """Lines from token s (tokens up to `free` placed without a check: a word moved down) to n."""
        margin = self.MARGIN
        right = max(self.width(), 200) - margin
        cum, texts = self._cum, self._labels
        newlines = self._newlines[: self._newline_count]
        x, w, line = self._x, self._w, self._line
        room = right - margin
        while s < n:
            at = int(newlines.searchsorted(s))
            if free == s:  # lines that are whole paragraphs (they fit): all at once
                s = self._whole_paragraphs(s, newlines[at:], room, n)
                free = s
                if s >= n:
                    break
                at = int(newlines.searchsorted(s))
            number = len(self._firsts)
            self._firsts.append(s)
            self._frees.append(free)
            # the first token past the room (a token at the line's start always stays)
            over = int(cum[: n + 1].searchsorted(cum[s] + room, side="right")) - 1
            over = max(over, free + 1, s + 1)
            newline = int(newlines[at]) if at < len(newlines) else n
            end = min(over, newline + 1, n)  # tokens s..end-1 at their own widths
            x[s:end] = margin + cum[s:end] - cum[s]
            w[s:end] = self._natural[s:end]
            line[s:end] = number
            if end == n or newline < over:
                s = free = end
                continue
            i = over
            if self._space[i]:  # spaces that do not fit end the line, shrunk to the room left
                left = margin + int(cum[i] - cum[s])
                while i < n and self._space[i]:
                    width = max(right - left, 1)
                    x[i], w[i], line[i] = left, width, number
                    left += width
                    i += 1
                s = free = i
                continue
            # the word of token i moves to the next line (its tokens are placed again there)
            s, free = wrap_before(texts, s, i), i

    def _whole_paragraphs(self, s: int, newlines: np.ndarray, room: int, n: int) -> int:
        """Lay out, from token s, the paragraphs (up to and with a newline token) that fit in one
        line each, as one line each; the token after the last of them."""
        ends = newlines[newlines < n]
        if not len(ends):
            return s
        starts = np.empty_like(ends)
        starts[0] = s
        starts[1:] = ends[:-1] + 1
        cum = self._cum
        fits = (ends == starts) | (cum[ends + 1] - cum[starts] <= room)
        count = int(np.argmin(fits)) if not fits.all() else len(fits)
        if not count:
            return s
        starts, ends = starts[:count], ends[:count]
        stop = int(ends[-1]) + 1
        lengths = ends - starts + 1
        first_of = np.repeat(starts, lengths)  # each token's line start
        number = len(self._firsts)
        self._x[s:stop] = self.MARGIN + cum[s:stop] - cum[first_of]
        self._w[s:stop] = self._natural[s:stop]
        self._line[s:stop] = np.repeat(np.arange(number, number + count, dtype=np.int32), lengths)
        self._firsts.extend(starts.tolist())
        self._frees.extend(starts.tolist())
        return stop

    def index_at(self, pos: QPoint) -> int | None:
        self._layout_state()
        if not self._laid:
            return None
        line = (pos.y() - self.MARGIN) // self._line_height
        if not 0 <= line < len(self._firsts):
            return None
        first = self._firsts[line]
        stop = self._firsts[line + 1] if line + 1 < len(self._firsts) else self._laid
        i = first + bisect.bisect_right(self._x[first:stop], pos.x()) - 1
        if i < first:
            return None
        return i if self._rects[i].contains(pos) else None

    def _lines_crossing(self, top: int, bottom: int) -> range:
        """The lines that cross y = top..bottom."""
        self._layout_state()
        lines = len(self._firsts) if self._laid else 0
        lo = max(0, (top - self.MARGIN) // self._line_height)
        hi = min(lines, (bottom - self.MARGIN) // self._line_height + 1)
        return range(lo, max(lo, hi))

    def _line_range(self, top: int, bottom: int) -> range:
        """The tokens of the lines that cross y = top..bottom."""
        crossed = self._lines_crossing(top, bottom)
        if not crossed:
            return range(0)
        lo, hi = crossed.start, crossed.stop
        return range(self._firsts[lo], self._firsts[hi] if hi < len(self._firsts) else self._laid)
