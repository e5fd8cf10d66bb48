"""The token strip: the text read and generated, one box per token, tinted like Karpathy's char-rnn
pictures by the selected signal; the current token outlined; generated tokens marked. Click to scrub.

The strip is a view of the Trace like the panels: `values(state)` are the trace's own numbers.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QLine, QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QScrollArea, QToolTip, QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels.prediction import COLOURS as LABEL_COLOURS
from memviz.panels.prediction import labels_of as class_labels
from memviz.panels.static_texts import StaticTexts
from memviz.panels.token_labels import live_labels
from memviz.panels.view_model import ViewModel

#: signal name -> (label, scale kind). "sequential": [0, 1]; "diverging": signed around 0.
SIGNALS: dict[str, tuple[str, str]] = {
    "none": ("No tint", "none"),
    "unit": ("Unit: hidden state h", "diverging"),
    "cell": ("Unit: cell state c", "diverging"),
    "attention": ("Attention of the current token", "sequential"),
    "memory": ("Memory similarity", "sequential"),
    # a classifier's answer after each token: one label's probability around 0.5, or the likeliest label
    "prediction": ("Prediction", "prediction"),
}

#: what the strip says before it has tokens (the window changes it once a model is loaded)
PLACEHOLDER = "No tokens yet. Load a model, type a text and press Space (or Play)."

POSITIVE = QColor(32, 120, 255)  # diverging, > 0 (char-rnn: blue/green for positive)
NEGATIVE = QColor(230, 50, 40)  # diverging, < 0


def available_signals(trace: Trace | None) -> list[str]:
    """The signals this trace can tint by (known from the model even before the first step)."""
    names = ["none"]
    if trace is None:
        return names
    recurrent = trace.kind == "recurrent"
    if recurrent or trace.has("hidden"):
        names.append("unit")
    if (recurrent and trace.model.get("cell", "lstm") == "lstm") or trace.has("cell"):  # a GRU has no c
        names.append("cell")
    if trace.kind == "transformer" or trace.has("attention"):
        names.append("attention")
    if trace.memory is not None or trace.has("memory_scores"):
        names.append("memory")
    if trace.has("prediction") or trace.model.get("head") == "classifier":
        names.append("prediction")
    return names


def display_text(token: str) -> str:
    """What a token looks like in the strip: whitespace made visible where it would vanish."""
    if token == "":
        return "\u00b7"
    shown = token.replace("\r", "").replace("\t", "\u2192").replace("\n", "\u21b5")
    return shown if shown else "\u00b7"


def signal_values(trace: Trace | None, state: ViewState, signal: str | None = None) -> np.ndarray:
    """Per-token values of the signal (NaN = no value for that token), straight from the trace.

    - "unit": hidden[t, layer, unit]; "cell": cell[t, layer, unit] (LSTM)
    - "attention": attention of the step at the cursor (layer, head) over tokens 0..cursor
    - "memory": the best memory score (max over the retrieved ones) at each step
    - "prediction": a classifier's probability of its one label, or of its likeliest label
      (`prediction_classes` says which) after each step
    """
    signal = signal or state.signal
    T = 0 if trace is None else len(trace)
    out = np.full(T, np.nan, dtype=np.float64)
    if trace is None or T == 0:
        return out
    try:
        if signal in ("unit", "cell"):
            key = "hidden" if signal == "unit" else "cell"
            if trace.has(key):
                column = trace.array(key)[:T]
                layer = min(max(state.layer, 0), column.shape[1] - 1)
                unit = min(max(state.unit, 0), column.shape[2] - 1)
                out[: len(column)] = column[:, layer, unit]
        elif signal == "attention":
            t = min(state.cursor, T - 1)
            if t >= 0 and trace.has("attention"):
                layers, heads = trace.attention_shape
                layer = min(max(state.layer, 0), layers - 1)
                head = min(max(state.head, 0), heads - 1)
                out[: t + 1] = trace.attention_row(t, layer, head)
        elif signal == "memory":
            if trace.has("memory_scores"):
                scores = trace.array("memory_scores")[:T].astype(np.float64)
                with np.errstate(invalid="ignore"):
                    best = scores.max(axis=1) if scores.shape[1] else np.full(len(scores), -np.inf)
                best[~np.isfinite(best)] = np.nan
                out[: len(best)] = best
        elif signal == "prediction":
            if trace.has("prediction"):
                prediction = trace.array("prediction")[:T].astype(np.float64)  # [T, C]
                if prediction.shape[1]:
                    out[: len(prediction)] = (
                        prediction.max(axis=1) if prediction.shape[1] > 1 else prediction[:, 0]
                    )
    except (KeyError, IndexError):
        pass
    return out


def prediction_classes(trace: Trace | None) -> np.ndarray | None:
    """The likeliest label at each step of a classifier with several labels (None: one label, or no
    prediction column)."""
    if trace is None or not trace.has("prediction"):
        return None
    prediction = trace.array("prediction")[: len(trace)]
    if prediction.shape[1] < 2:
        return None
    return np.argmax(prediction, axis=1)


def tint_strengths(values: np.ndarray, signal: str, labels: int = 1) -> np.ndarray:
    """Map values to tint strengths in [-1, 1] (sign = colour for diverging signals; NaN = none).

    attention: sqrt(value) (absolute, so that a spread-out row stays faint and a sharp one bright;
    the root lifts small weights in a long context into view);
    memory: min-max over the run; diverging: value / max |value| of the run (h is already in [-1, 1]);
    prediction: one label's probability around 0.5 (2p - 1: 0.5 untinted, 1 and 0 full in the two
    colours), or with `labels` > 1 how far the likeliest label's probability is above a uniform guess.
    """
    kind = SIGNALS.get(signal, ("", "none"))[1]
    strengths = np.full(values.shape, np.nan)
    finite = np.isfinite(values)
    if kind == "none" or not finite.any():
        return strengths
    v = values[finite]
    if signal == "attention":
        strengths[finite] = np.sqrt(np.clip(v, 0.0, 1.0))
    elif signal == "memory":
        lo, hi = v.min(), v.max()
        strengths[finite] = (v - lo) / (hi - lo) if hi > lo else 1.0
    elif signal == "prediction":
        floor = 1.0 / labels if labels > 1 else 0.5
        strengths[finite] = np.clip((v - floor) / (1.0 - floor), -1.0, 1.0)
    elif signal == "unit":
        strengths[finite] = np.clip(v, -1, 1)
    else:
        top = np.abs(v).max()
        strengths[finite] = v / top if top > 0 else 0.0
    return strengths


def tint_scale(values: np.ndarray, signal: str, labels: int = 1) -> tuple[float, float] | None:
    """The values at the two ends of the tint's colour scale (what tint_strengths maps to its lowest
    and to its full strength), or None when nothing is tinted."""
    kind = SIGNALS.get(signal, ("", "none"))[1]
    finite = values[np.isfinite(values)]
    if kind == "none":
        return None
    if signal == "attention":
        return 0.0, 1.0
    if signal == "prediction":
        return (1.0 / labels if labels > 1 else 0.0), 1.0
    if not finite.size:
        return None
    if signal == "memory":
        return float(finite.min()), float(finite.max())
    top = 1.0 if signal == "unit" else float(np.abs(finite).max())
    return -top, top


def wrap_before(texts: list[str], start: int, index: int) -> int:
    """Where a line that starts at token `start` should break when token `index` does not fit: the
    first token of the word `index` belongs to (a word: tokens with no whitespace between them), or
    `index` itself when that word starts the line (a word longer than the line breaks inside)."""
    j = index
    while j > start and not (texts[j - 1][-1:].isspace() or texts[j][:1].isspace()):
        j -= 1
    return j if j > start else index


class TokenStrip(QWidget):
    """Flowing token boxes. Lay-out is incremental: new tokens are placed after the last one."""

    token_clicked = Signal(int)

    PAD_X = 0
    PAD_Y = 3
    MARGIN = 6

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
        self._widths: dict[str, int] = {}
        self._tints: dict[tuple, QColor] = {}
        self._texts = StaticTexts(limit=20_000)  # laid out in the painter's font (the style's)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setAttribute(Qt.WA_OpaquePaintEvent, False)
        self.setObjectName("tokenStrip")
        self._apply_font()

    # -- data ---------------------------------------------------------------------------------
    def set_trace(self, trace: Trace | None) -> None:
        self.trace = trace
        self._labels = live_labels(trace)
        self._relayout()

    def render(self, state: ViewState) -> None:
        """Bring the strip up to date with the trace and the view; repaints once."""
        theme_changed = state.theme != self.state.theme
        self.state = state
        if theme_changed:
            self._apply_font()
            self._relayout()
        self._extend_layout()
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

    def sizeHint(self) -> QSize:
        return QSize(600, max(self.minimumHeight(), 80))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if event.size().width() != self._laid_width:
            self._relayout()

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
        line_height = self._rects[0].height() + 2
        lo = bisect.bisect_left(self._line_tops, exposed.top() - line_height)
        hi = bisect.bisect_right(self._line_tops, exposed.bottom())
        trace = self.trace
        foreground = QColor(theme.foreground)
        generated_color = QColor(theme.generated)
        cursor = self.state.cursor
        strengths = self._strengths
        shown = range(lo, min(hi, len(self._rects)))
        finite = np.isfinite(strengths[lo : shown.stop]) if len(strengths) else np.zeros(0, bool)
        for i in shown:  # tints first, then texts: fewer pen changes
            if i - lo < len(finite) and finite[i - lo]:
                painter.fillRect(self._rects[i], self._tint(float(strengths[i]), self._class_of(i)))
        # the text's baseline sits at PAD_Y + ascent - 1 (the painter's font may be the style's, so
        # its own ascent places the line's top)
        top_offset = self.PAD_Y + self._metrics.ascent() - 1 - painter.fontMetrics().ascent()
        if painter.font() != self._texts.font:
            self._texts.set_font(painter.font())
        pen_generated = None
        font = None
        underlines = []
        painter.setPen(foreground)
        for i in shown:
            rect = self._rects[i]
            generated = trace.generated[i]
            if generated != pen_generated:
                pen_generated = generated
                painter.setPen(generated_color if generated else foreground)
            # a QStaticText is laid out once per distinct token; it is drawn from the top of its line
            static, static_font = self._texts.entry(display_text(self._labels[i]))
            if static_font is not font:
                font = static_font
                painter.setFont(font)
            painter.drawStaticText(rect.left() + self.PAD_X, rect.top() + top_offset, static)
            if generated:
                underlines.append(QLine(rect.left(), rect.bottom(), rect.right(), rect.bottom()))
        if underlines:
            painter.setPen(QPen(generated_color, 1, Qt.DashLine))
            painter.drawLines(underlines)
        if 0 <= cursor < len(self._rects):
            painter.setPen(QPen(QColor(theme.accent), 2))
            painter.setBrush(Qt.NoBrush)
            painter.drawRect(self._rects[cursor].adjusted(0, 0, -1, -1))
        painter.end()

    # -- mouse ------------------------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.LeftButton:
            index = self.index_at(event.position().toPoint())
            if index is not None:
                self.token_clicked.emit(index)
                return
        super().mousePressEvent(event)

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


def scale_text(value: float) -> str:
    return f"{value:.3g}"


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
        low, high = self.ends()
        for k in range(bar.width()):
            strength = low + (high - low) * k / max(bar.width() - 1, 1)
            painter.fillRect(QRect(bar.left() + k, bar.top(), 1, bar.height()), self.strip._tint(strength))
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


class TokenStripView(QScrollArea):
    """The strip in a vertical scroll area that follows the cursor, its tint's legend below it."""

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.strip = TokenStrip(view)
        self.setWidget(self.strip)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setFocusProxy(self.strip)
        self.legend = TokenLegend(self.strip, self)
        self._place_legend()

    def _legend_height(self) -> int:
        return self.strip.fontMetrics().height() + 6

    def _place_legend(self) -> None:
        height = self._legend_height()
        self.setViewportMargins(0, 0, 0, height)
        frame = self.frameWidth()
        area = self.contentsRect()
        self.legend.setGeometry(area.left(), area.bottom() + 1 - height + 0 * frame, area.width(), height)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._place_legend()

    def render(self, state: ViewState) -> None:
        theme_changed = state.theme != self.strip.state.theme
        self.strip.render(state)
        self.strip.scroll_to(state.cursor, self)
        self.legend.describe(state, self.strip.values())
        if theme_changed:
            self._place_legend()
            self.legend.update()
