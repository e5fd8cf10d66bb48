"""The token strip widget: the text read and generated, one box per token, tinted by the selected
signal, the current token outlined, generated tokens underlined; click to scrub, hover for a tooltip."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from PySide6.QtCore import QLine, QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QScrollArea, QToolTip, QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels.intervention_targets import token_targets
from memviz.panels.prediction import COLOURS as LABEL_COLOURS
from memviz.panels.prediction import labels_of as class_labels
from memviz.panels.static_texts import StaticTexts
from memviz.panels.token_labels import live_labels
from memviz.panels.view_model import ViewModel
from memviz.ui.token_layout import StripLayout
from memviz.ui.token_signals import (
    SIGNALS,
    display_text,
    prediction_classes,
    signal_values,
    tint_strengths,
)

#: what the strip says before it has tokens (the window changes it once a model is loaded)
PLACEHOLDER = "No tokens yet. Load a model, type a text and press Space (or Play)."

POSITIVE = QColor(32, 120, 255)  # diverging, > 0 (char-rnn: blue/green for positive)
NEGATIVE = QColor(230, 50, 40)  # diverging, < 0


class TokenStrip(QWidget, StripLayout):
    """Flowing token boxes. Lay-out is incremental: new tokens are placed after the last one."""

    LINE_PIXMAPS = 64  # lines' texts kept as pixmaps (a screenful is tens of lines)

    token_clicked = Signal(int)
    menu_requested = Signal(object)  # a right-click: its global position (the app's Intervene menu)

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.trace: Trace | None = None
        self.state = view.state
        self._rects: list[QRect] = []  # one per laid-out token
        self._line_tops: list[int] = []  # y of each token's line (sorted), for hit tests
        self._line_start = 0  # the first token of the last line laid out
        self._laid_width = -1
        self._values = np.zeros(0)
        self._strengths = np.zeros(0)
        self._classes: np.ndarray | None = None  # the likeliest label per token (prediction tint)
        self._labels: Sequence[str] = ()  # the trace's token labels (partial characters as ‹C3›)
        self.placeholder = PLACEHOLDER  # shown while there are no tokens
        self.marked_span: tuple[int, int] | None = None  # steps a..b outlined (a pattern match)
        self._widths: dict[str, int] = {}
        self._tints: dict[tuple, QColor] = {}
        self._texts = StaticTexts(limit=20_000)  # laid out in the painter's font (the style's)
        self._line_pixmaps: OrderedDict[tuple, QPixmap] = OrderedDict()  # _line_key: its texts
        self._painted_lines: set[tuple] = set()  # the lines' keys of the last paint
        self._signal_key: tuple | None = None  # what the values were read for
        self._boundaries: tuple[tuple, tuple[int, ...]] = ((None, -1), ())  # (trace, length): steps
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setAttribute(Qt.WA_OpaquePaintEvent, False)
        self.setObjectName("tokenStrip")
        self._apply_font()

    # -- data ---------------------------------------------------------------------------------
    def set_trace(self, trace: Trace | None) -> None:
        if trace is not self.trace:
            self.marked_span = None  # a span of another run
        self.trace = trace
        self._labels = live_labels(trace)
        self._line_pixmaps.clear()
        self._signal_key = None
        self._relayout()

    def set_marked_span(self, start: int | None, end: int | None = None) -> None:
        """Outline steps start..end (both included; None: no span), as a pattern match's click asks."""
        self.marked_span = None if start is None else (int(start), int(end if end is not None else start))
        self.update()

    def render(self, state: ViewState) -> None:
        """Bring the strip up to date with the trace and the view; repaints once."""
        theme_changed = state.theme != self.state.theme
        self.state = state
        if theme_changed:
            self._apply_font()
            self._relayout()
        self._extend_layout()
        # the values read the whole run: again only when it grew or the signal changed (a scrub
        # moves the cursor only; the attention signal is the cursor's row)
        n = 0 if self.trace is None else len(self.trace)
        moved = state.cursor if state.signal == "attention" else -1
        key = (id(self.trace), n, replace(state, cursor=moved, follow=False))
        if key != self._signal_key:
            self._signal_key = key
            self._values = signal_values(self.trace, state)
            self._classes = prediction_classes(self.trace) if state.signal == "prediction" else None
            self._strengths = tint_strengths(self._values, state.signal, self.label_count())
        self.update()

    def label_count(self) -> int:
        """How many labels the trace's classifier has (1 without a prediction column)."""
        trace = self.trace
        return trace.array("prediction").shape[1] if trace is not None and trace.has("prediction") else 1

    def values(self) -> np.ndarray:
        """The per-token values of the current signal, as last rendered."""
        return self._values

    def strengths(self) -> np.ndarray:
        return self._strengths

    def token_count(self) -> int:
        return len(self._rects)

    def token_rect(self, index: int) -> QRect:
        return QRect(self._rects[index])

    def token_label(self, index: int) -> str:
        return display_text(self._labels[index])

    def token_color(self, index: int) -> QColor | None:
        """The background tint of token `index`, or None when it has no value."""
        if index >= len(self._strengths):
            return None
        s = self._strengths[index]
        if not np.isfinite(s):
            return None
        return self._tint(float(s), self._class_of(index))

    def _class_of(self, index: int) -> int:
        classes = self._classes
        return int(classes[index]) if classes is not None and index < len(classes) else -1

    def token_marks(self, index: int) -> dict:
        """What the strip shows for one token: its label, whether it was generated, whether it is
        the current one, its signal value and tint (None when it has no value)."""
        return {
            "text": self.token_label(index),
            "generated": bool(self.trace.generated[index]),
            "current": index == self.state.cursor,
            "value": float(self._values[index]) if index < len(self._values) else float("nan"),
            "color": self.token_color(index),
        }

    def _tint(self, s: float, label: int = -1) -> QColor:
        theme = self.state.theme_obj
        kind = SIGNALS.get(self.state.signal, ("", "none"))[1]
        if label >= 0:  # the prediction tint of a classifier with several labels: the label's colour
            base = QColor(LABEL_COLOURS[label % len(LABEL_COLOURS)])
        elif kind in ("diverging", "prediction"):
            base = POSITIVE if s >= 0 else NEGATIVE
        else:
            base = theme.accent
        alpha = round(min(1.0, abs(s)) * 0.85 * 255)  # the 8-bit alpha a QColor holds anyway
        key = (base.rgba() if isinstance(base, QColor) else base, alpha)
        color = self._tints.get(key)
        if color is None:
            color = self._tints[key] = QColor(base)
            color.setAlpha(alpha)
        return color

    def sizeHint(self) -> QSize:
        return QSize(600, max(self.minimumHeight(), 80))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if event.size().width() != self._laid_width:
            self._relayout()

    # -- painting -------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        theme = self.state.theme_obj
        painter.fillRect(event.rect(), QColor(theme.panel_background))
        if not self._rects:
            painter.setPen(QColor(theme.foreground))
            painter.drawText(
                self.rect().adjusted(12, 12, -12, -12),
                Qt.AlignLeft | Qt.TextWordWrap,
                self.placeholder,
            )
            painter.end()
            return
        exposed = event.rect()
        shown = self._line_range(exposed.top(), exposed.bottom())  # only the boxes in view
        lo, hi = shown.start, shown.stop
        cursor = self.state.cursor
        self._paint_tints(painter, lo, hi)
        font = painter.font()
        if font != self._texts.font:
            self._texts.set_font(font)
        painted = set()
        for line in self._lines_crossing(exposed.top(), exposed.bottom()):
            key = self._line_key(line, font)
            painted.add(key)
            top = self.MARGIN + line * self._line_height
            pixmap = self._line_pixmaps.get(key)
            if pixmap is None and key in self._painted_lines:
                pixmap = self._line_pixmap(key)  # shown twice in a row: it stays (a run going on)
            if pixmap is not None:
                self._line_pixmaps.move_to_end(key)
                painter.drawPixmap(0, top, pixmap)
            else:  # a line just scrolled to is drawn directly: a scrub makes no pixmaps
                self._draw_line(painter, key, top)
                painter.setFont(font)
        self._painted_lines = painted
        rects = self._rects
        if self.marked_span is not None:  # dotted, under the cursor's solid box
            first, last = self.marked_span
            painter.setPen(QPen(QColor(theme.accent), 1, Qt.DotLine))
            painter.setBrush(Qt.NoBrush)
            box: QRect | None = None  # one box per line the span covers
            for i in range(max(first, shown.start), min(last, shown.stop - 1) + 1):
                rect = rects[i]
                if box is not None and rect.top() == box.top():
                    box = box.united(rect)
                    continue
                if box is not None:
                    painter.drawRect(box.adjusted(0, 0, -1, -1))
                box = QRect(rect)
            if box is not None:
                painter.drawRect(box.adjusted(0, 0, -1, -1))
        boundaries = [s for s in self.window_boundaries() if lo <= s < hi]
        if boundaries:  # where a sliding window of the model starts: a thin bar before the token
            painter.setPen(QPen(QColor(theme.accent), 1, Qt.DashLine))
            painter.drawLines([QLine(rects[s].topLeft(), rects[s].bottomLeft()) for s in boundaries])
        if 0 <= cursor < len(self._rects):
            painter.setPen(QPen(QColor(theme.accent), 2))
            painter.setBrush(Qt.NoBrush)
            painter.drawRect(self._rects[cursor].adjusted(0, 0, -1, -1))
        painter.end()

    def _paint_tints(self, painter: QPainter, lo: int, hi: int) -> None:
        """The tints of tokens lo..hi-1, one fill per token whose tint shows (8-bit alpha > 0: the
        attention tint leaves most tokens bare)."""
        strengths = self._strengths[lo : min(hi, len(self._strengths))]
        if not len(strengths):
            return
        with np.errstate(invalid="ignore"):
            shows = np.isfinite(strengths) & (np.round(np.minimum(np.abs(strengths), 1.0) * 0.85 * 255) > 0)
        at = np.flatnonzero(shows)
        if not len(at):
            return
        index = lo + at
        xs, ws = self._x[index].tolist(), self._w[index].tolist()
        tops = (self.MARGIN + self._line[index].astype(np.int64) * self._line_height).tolist()
        height = self._line_height - 2
        values = strengths[at].tolist()
        for i, x, w, top, s in zip(index.tolist(), xs, ws, tops, values, strict=True):
            painter.fillRect(x, top, w, height, self._tint(s, self._class_of(i)))

    def _line_key(self, line: int, font: QFont) -> tuple:
        """What a line's texts depend on: its tokens, the width, the theme's colours, the font."""
        first = self._firsts[line]
        stop = self._firsts[line + 1] if line + 1 < len(self._firsts) else self._laid
        theme = self.state.theme_obj
        ratio = self.devicePixelRatioF()
        return (first, stop, self.width(), ratio, theme.foreground, theme.generated, font.key())

    def _line_pixmap(self, key: tuple) -> QPixmap:
        """The texts of one line on a transparent pixmap, kept: a step then repaints the tints and
        the cursor, and blits the lines. The line's last token, the width or the theme changing
        makes another key."""
        ratio = key[3]
        pixmap = QPixmap(round(self.width() * ratio), round(self._line_height * ratio))
        pixmap.setDevicePixelRatio(ratio)
        pixmap.fill(Qt.transparent)
        painter = QPainter(pixmap)
        self._draw_line(painter, key, 0)
        painter.end()
        self._line_pixmaps[key] = pixmap
        while len(self._line_pixmaps) > self.LINE_PIXMAPS:
            self._line_pixmaps.popitem(last=False)
        return pixmap

    def _draw_line(self, painter: QPainter, key: tuple, y: int) -> None:
        """The texts of a line's tokens (key: `_line_key`) and the generated ones' underlines, the
        line's top at y."""
        first, stop, _width, _ratio, foreground, generated_name, _font = key
        painter.setFont(self._texts.font)
        # the text's baseline sits at PAD_Y + ascent - 1 (the painter's font may be the style's, so
        # its own ascent places the line's top)
        top = y + self.PAD_Y + self._metrics.ascent() - 1 - painter.fontMetrics().ascent()
        text_color, generated_color = QColor(foreground), QColor(generated_name)
        generated = self.trace.generated
        pen_generated = None
        drawn_font = None
        underlines = []
        bottom = y + self._line_height - 3
        for i, x, w in zip(
            range(first, stop), self._x[first:stop].tolist(), self._w[first:stop].tolist(), strict=True
        ):
            is_generated = bool(generated[i])
            if is_generated != pen_generated:
                pen_generated = is_generated
                painter.setPen(generated_color if is_generated else text_color)
            # a QStaticText is laid out once per distinct token
            static, static_font = self._texts.entry(display_text(self._labels[i]))
            if static_font is not drawn_font:
                drawn_font = static_font
                painter.setFont(static_font)
            painter.drawStaticText(x + self.PAD_X, top, static)
            if is_generated:
                underlines.append(QLine(x, bottom, x + w - 1, bottom))
        if underlines:
            painter.setPen(QPen(generated_color, 1, Qt.DashLine))
            painter.drawLines(underlines)

    def window_boundaries(self) -> tuple[int, ...]:
        """The steps where a new sliding window of the model starts (() for a run that never slid),
        read once per trace length."""
        trace = self.trace
        key = (id(trace), 0 if trace is None else len(trace))
        if self._boundaries[0] != key:
            steps = tuple(getattr(trace, "window_boundaries", ()) or ()) if trace is not None else ()
            self._boundaries = (key, steps)
        return self._boundaries[1]

    # -- mouse ------------------------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.LeftButton:
            index = self.index_at(event.position().toPoint())
            if index is not None:
                self.token_clicked.emit(index)
                return
        super().mousePressEvent(event)

    def contextMenuEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.menu_requested.emit(event.globalPos())
        event.accept()

    def intervention_targets_at(self, global_pos: QPoint) -> list[tuple[str, str]]:
        """What a right-click here can change: the token under the mouse (token_targets)."""
        index = self.index_at(self.mapFromGlobal(global_pos))
        if index is None:
            return []
        return token_targets(self.trace, index, self.state.cursor)

    def mouseMoveEvent(self, event) -> None:
        pos = event.position().toPoint()
        index = self.index_at(pos)
        if index is None:
            QToolTip.hideText()
        else:
            QToolTip.showText(event.globalPosition().toPoint(), self.tooltip_text(index), self)
        super().mouseMoveEvent(event)

    def tooltip_text(self, index: int) -> str:
        trace = self.trace
        token = self._labels[index]
        kind = "generated" if trace.generated[index] else "read"
        lines = [f"step {index + 1}: {token!r} (id {trace.token_ids[index]}, {kind})"]
        if index < len(self._values) and np.isfinite(self._values[index]):
            label = SIGNALS.get(self.state.signal, (self.state.signal, ""))[0]
            if self.state.signal == "prediction":
                names = class_labels(trace)
                name = names[max(self._class_of(index), 0)] if names else "?"
                label = f"{label}: {name}" if self._class_of(index) >= 0 else f"{label}: p({name})"
            lines.append(f"{label}: {self._values[index]:.4f}")
        try:
            probs = trace.array("topk_probs")[index]
            ids = trace.array("topk_ids")[index]
            if index + 1 < len(trace) and ids.size:  # a classifier has no candidates: no such line
                nxt = trace.token_ids[index + 1]
                hit = np.nonzero(ids == nxt)[0]
                p = f"{probs[hit[0]]:.4f}" if len(hit) else "not in the top candidates"
                lines.append(f"p(next token {self._labels[index + 1]!r}) = {p}")
        except (KeyError, IndexError):
            pass
        return "\n".join(lines)

    def scroll_to(self, index: int, area: QScrollArea | None) -> None:
        if area is not None and 0 <= index < len(self._rects):
            rect = self._rects[index]
            area.ensureVisible(rect.center().x(), rect.center().y(), 20, rect.height() * 2)
