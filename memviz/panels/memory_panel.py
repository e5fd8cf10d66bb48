"""Long-term memory: what the current step recalled, and what recall did to the next token.

Top: the k memories retrieved at the cursor, best first, as horizontal bars of their weight in the
kNN distribution (exp(score / temperature), relative to the best; score = -squared L2 distance),
each with its source snippet (the stored next token highlighted in its context) and document.
Bottom, side by side: the model's distribution (p_LM), the memory's (p_kNN) and their mix
(p = lambda * p_kNN + (1 - lambda) * p_LM), with the token that actually came next highlighted.

Everything drawn comes from the trace: the snippets are the records the Session saved with the run
(`Trace.memory_record`), so an exported figure needs no store. A trace saved without them (before
they were recorded) shows ids and scores, and says that its snippets were not saved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter
from PySide6.QtWidgets import QFrame, QGraphicsItem, QGraphicsScene, QGraphicsView, QVBoxLayout, QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels.base import Panel
from memviz.panels.fonts import needs_shaping, unshaped
from memviz.panels.heatmap import candidate_text, theme_font
from memviz.panels.view_model import ViewModel

ROWS_MAX = 16
CANDIDATES = 8


def _visible(text: str) -> str:
    return text.replace("\r", "").replace("\n", "\u23ce").replace("\t", "\u21e5")


def _token(text: str, limit: int = 14) -> str:
    shown = text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r").replace(" ", "\u2423")
    if len(shown) > limit:
        shown = shown[: limit - 1] + "\u2026"
    return shown or "\u2205"


def _score(score: float) -> str:
    """-squared L2 distance, short: 0 for an exact match."""
    if abs(score) < 5e-3:
        return "0.00"
    return f"{score:.2f}" if abs(score) < 1000 else f"{score:.3g}"


def _line(p: QPainter, fm: QFontMetricsF, x: float, mid: float, text: str, right: bool = False) -> None:
    """One line of text vertically centred on `mid`, starting (or, with `right`, ending) at x.

    drawText at a point skips the layout that drawText in a rectangle does each time: a paint of
    this panel draws about a hundred texts.
    """
    if right:
        x -= fm.horizontalAdvance(text)
    p.drawText(QPointF(x, mid + (fm.ascent() - fm.descent()) / 2), text)


class _Drawing(QGraphicsItem):
    """One item filling the view; it paints the whole panel (so export and the screen match)."""

    def __init__(self, panel: MemoryPanel) -> None:
        super().__init__()
        self.panel = panel
        self.size = (400.0, 300.0)

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt's name
        return QRectF(0, 0, *self.size)

    def paint(self, painter: QPainter, _option, _widget=None) -> None:
        self.panel.paint_on(painter, *self.size)


class _Canvas(QGraphicsView):
    def __init__(self, panel: MemoryPanel) -> None:
        super().__init__()
        self.setScene(QGraphicsScene(self))
        self.item = _Drawing(panel)
        self.scene().addItem(self.item)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        w, h = float(self.viewport().width()), float(self.viewport().height())
        self.item.prepareGeometryChange()
        self.item.size = (w, h)
        self.scene().setSceneRect(0, 0, w, h)
        self.item.update()


class MemoryPanel(Panel):
    name = "memory"
    title = "Long-term memory"
    architectures = ()

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self._known: dict[int, str] = {}
        self.step = -1
        self.rows: list[tuple[int, float, float, object]] = []  # (id, score, relative weight, record)
        self.columns: list[tuple[str, np.ndarray, np.ndarray]] = []  # (title, ids, probs)
        self.next_id: int | None = None
        self.needs_shaping = True  # whether any text of the step shown needs shaping (see render)
        self.state = view.state
        self.setMinimumSize(420, 300)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.canvas = _Canvas(self)
        layout.addWidget(self.canvas)
        self.setToolTip(
            "Memories recalled at this step, best first: bar = weight in the kNN distribution "
            "(exp(score / temperature), relative to the best), score = -squared L2 distance; "
            "the stored next token is highlighted in its source. Below: the model's, the memory's and the "
            "mixed next-token distributions; highlighted: the token that actually came next."
        )

    @classmethod
    def supports(cls, trace: Trace) -> bool:
        return trace.has("memory_ids")

    # -- data ---------------------------------------------------------------------------------------
    def set_store(self, store) -> None:
        """Kept for the window, which still hands the panel its store: a no-op, the panel reads the
        trace only (its snippets were saved in it as the run recalled them)."""

    def set_trace(self, trace: Trace | None) -> None:
        super().set_trace(trace)
        self._known = {}
        self.step = -1
        self.rows, self.columns = [], []

    def token_text(self, token_id: int) -> str:
        return candidate_text(self.trace, token_id, self._known)

    def render(self, state: ViewState) -> None:
        self.state = state
        trace = self.trace
        if trace is None or len(trace) == 0 or state.cursor < 0 or not trace.has("memory_ids"):
            self.step, self.rows, self.columns = -1, [], []
            self.canvas.item.update()
            return
        t = max(0, min(int(state.cursor), len(trace) - 1))
        self.step = t
        ids = trace.array("memory_ids")[t]
        scores = trace.array("memory_scores")[t]
        valid = ids >= 0
        ids, scores = ids[valid], scores[valid]
        temperature = float((trace.memory or {}).get("temperature", 1.0)) or 1.0
        weights = np.exp((scores.astype(np.float64) - (scores[0] if len(scores) else 0.0)) / temperature)
        records = [trace.memory_record(i) for i in ids]
        for rec in records:
            if rec is not None:
                self._known.setdefault(rec.next_token, rec.token_text)
        self.rows = [
            (int(i), float(s), float(w), r) for i, s, w, r in zip(ids, scores, weights, records, strict=True)
        ][:ROWS_MAX]
        self.columns = []
        for title, key in (("model  p_LM", "lm_topk"), ("memory  p_kNN", "knn_topk"), ("mix  p", "topk")):
            if trace.has(f"{key}_ids"):
                self.columns.append(
                    (
                        title,
                        trace.array(f"{key}_ids")[t][:CANDIDATES],
                        trace.array(f"{key}_probs")[t][:CANDIDATES],
                    )
                )
        self.next_id = trace.token_ids[t + 1] if t + 1 < len(trace) else None
        self.needs_shaping = self._texts_need_shaping()
        self.canvas.item.update()

    def apply_theme(self, state: ViewState) -> None:
        self.state = state
        self.canvas.item.update()

    # -- drawing ------------------------------------------------------------------------------------
    def paint_on(self, p: QPainter, w: float, h: float) -> None:
        theme = self.state.theme_obj
        p.fillRect(QRectF(0, 0, w, h), QColor(theme.panel_background))
        fg = QColor(theme.foreground)
        dim = QColor(fg)
        dim.setAlpha(150)
        font, small = theme_font(theme), theme_font(theme, -2)
        title_font = QFont(font)
        title_font.setPointSize(theme.title_size)
        title_font.setBold(True)
        if not self.needs_shaping:  # skipping it saves a quarter of this paint
            font, small, title_font = unshaped(font), unshaped(small), unshaped(title_font)
        pad = 8.0
        trace = self.trace
        p.setFont(title_font)
        p.setPen(fg)
        tf = QFontMetricsF(title_font)
        if trace is None or self.step < 0:
            p.drawText(
                QRectF(0, 0, w, h), Qt.AlignmentFlag.AlignCenter, "no recall yet: run with a memory store"
            )
            return
        memory = trace.memory or {}
        token = _token(trace.token_label(self.step), 20)
        store_name = Path(str(memory.get("store", "?"))).name
        head = (
            f"recalled at step {self.step} '{token}'   k={memory.get('k', '?')}  "
            f"\u03bb={memory.get('lambda', '?')}  T={memory.get('temperature', '?')}   "
            f"{store_name} ({memory.get('entries', '?')} entries)"
        )
        p.drawText(
            QRectF(pad, pad, w - 2 * pad, tf.height()),
            Qt.AlignmentFlag.AlignLeft,
            tf.elidedText(head, Qt.TextElideMode.ElideRight, w - 2 * pad),
        )
        y = pad + tf.height() + 4
        lower_h = min(max(0.38 * h, (CANDIDATES + 2) * QFontMetricsF(small).height() + 8), 0.55 * h)
        self._draw_rows(p, QRectF(pad, y, w - 2 * pad, h - y - lower_h - pad), font, small, fg, dim)
        self._draw_columns(p, QRectF(pad, h - lower_h, w - 2 * pad, lower_h - pad), font, small, fg, dim)

    def _texts_need_shaping(self) -> bool:
        """Whether any text the step shows needs text shaping (Arabic, Indic, combining marks)."""
        trace = self.trace
        texts = [trace.token_label(self.step), str((trace.memory or {}).get("store", ""))]
        for _, _, _, rec in self.rows:
            if rec is not None:
                texts += [rec.snippet, rec.document_name]
        for _, ids, _ in self.columns:
            texts += [self.token_text(int(i)) for i in ids]
        return any(needs_shaping(text) for text in texts)

    def _draw_rows(
        self, p: QPainter, area: QRectF, font: QFont, small: QFont, fg: QColor, dim: QColor
    ) -> None:
        theme = self.state.theme_obj
        fm, sm = QFontMetricsF(font), QFontMetricsF(small)
        if not self.rows:
            p.setFont(font)
            p.setPen(dim)
            p.drawText(area, Qt.AlignmentFlag.AlignLeft, "no memories: the store is empty")
            return
        row_h = max(fm.height() * 1.35, 14.0)
        fits = max(1, int(area.height() // row_h))
        if len(self.rows) > fits:  # the last line says how many more there are
            fits = max(1, fits - 1)
        shown = self.rows[:fits]
        bar_w = min(160.0, 0.2 * area.width())
        score_w = sm.horizontalAdvance("-00.0000 ")
        doc_w = min(170.0, 0.22 * area.width())
        text_x = area.left() + bar_w + score_w + 6
        text_w = area.right() - doc_w - 8 - text_x
        bar_color = QColor("#7fa86f" if theme.is_dark else "#8cbf7a")
        accent = QColor(theme.accent)
        for n, (entry_id, score, weight, rec) in enumerate(shown):
            top = area.top() + n * row_h
            mid = top + row_h / 2
            bw = max(1.0, bar_w * weight)
            p.fillRect(QRectF(area.left(), top + row_h * 0.18, bw, row_h * 0.64), bar_color)
            p.setFont(small)
            p.setPen(fg)
            _line(p, sm, area.left() + bar_w + 4, mid, _score(score))
            p.setFont(font)
            if rec is None:
                p.setPen(dim)
                _line(
                    p,
                    fm,
                    text_x,
                    mid,
                    fm.elidedText(
                        f"memory #{entry_id} (its snippet was not saved in this trace)",
                        Qt.TextElideMode.ElideRight,
                        text_w,
                    ),
                )
                continue
            tok = _visible(rec.token) or "\u2205"
            tok_w = fm.horizontalAdvance(tok) + 4
            room = max(0.0, text_w - tok_w)
            after_w = min(fm.horizontalAdvance(_visible(rec.after)), room * 0.35)
            before = fm.elidedText(_visible(rec.before), Qt.TextElideMode.ElideLeft, room - after_w)
            after = fm.elidedText(
                _visible(rec.after), Qt.TextElideMode.ElideRight, room - fm.horizontalAdvance(before)
            )
            x = text_x
            p.setPen(dim)
            _line(p, fm, x, mid, before)
            x += fm.horizontalAdvance(before)
            box = QRectF(x, mid - fm.height() / 2 - 1, tok_w, fm.height() + 2)
            p.fillRect(box, accent)
            p.setPen(QColor(theme.panel_background))
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, tok)
            x += tok_w
            p.setPen(dim)
            _line(p, fm, x, mid, after)
            p.setFont(small)
            p.setPen(fg)
            doc = sm.elidedText(f"{rec.document_name} @{rec.position}", Qt.TextElideMode.ElideMiddle, doc_w)
            _line(p, sm, area.right(), mid, doc, right=True)
        if len(self.rows) > fits:
            p.setFont(small)
            p.setPen(dim)
            _line(
                p,
                sm,
                area.right(),
                area.top() + (fits + 0.5) * row_h,
                f"+{len(self.rows) - fits} more",
                right=True,
            )

    def _draw_columns(
        self, p: QPainter, area: QRectF, font: QFont, small: QFont, fg: QColor, dim: QColor
    ) -> None:
        theme = self.state.theme_obj
        if not self.columns:
            return
        sm = QFontMetricsF(small)
        gap = 14.0
        col_w = (area.width() - gap * (len(self.columns) - 1)) / len(self.columns)
        colors = ["#6f8fb7", "#7fa86f", "#b58fc7"] if theme.is_dark else ["#9fb7d6", "#8cbf7a", "#c9a6d9"]
        accent = QColor(theme.accent)
        p.fillRect(
            QRectF(area.left(), area.top() - 4.5, area.width(), 1.0), dim
        )  # a rule (drawLine antialiased: 0.2 ms)
        for c, (title, ids, probs) in enumerate(self.columns):
            left = area.left() + c * (col_w + gap)
            p.setFont(font)
            p.setPen(fg)
            p.drawText(
                QRectF(left, area.top(), col_w, QFontMetricsF(font).height()),
                Qt.AlignmentFlag.AlignLeft,
                title,
            )
            top = area.top() + QFontMetricsF(font).height() + 2
            row_h = max(10.0, (area.bottom() - top) / max(1, CANDIDATES))
            label_w = min(sm.horizontalAdvance("M" * 9), col_w * 0.35)
            value_w = sm.horizontalAdvance("0.000 ")
            bar_room = max(4.0, col_w - label_w - value_w - 6)
            p.setFont(small)
            for r, (tid, prob) in enumerate(zip(ids, probs, strict=True)):
                if prob <= 0 and r > 0:
                    break
                y = top + r * row_h
                actual = self.next_id is not None and int(tid) == int(self.next_id)
                p.setPen(accent if actual else fg)
                label = sm.elidedText(
                    _token(self.token_text(int(tid))), Qt.TextElideMode.ElideRight, label_w - 4
                )
                _line(p, sm, left + label_w - 4, y + row_h / 2, label, right=True)
                bar = QRectF(left + label_w, y + row_h * 0.15, max(1.0, bar_room * float(prob)), row_h * 0.7)
                p.fillRect(bar, accent if actual else QColor(colors[c % 3]))
                p.setPen(fg)
                _line(p, sm, bar.right() + 3, y + row_h / 2, f"{float(prob):.3f}")
