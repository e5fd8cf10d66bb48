"""The next-token distribution: the top-k candidates after reading the current token, best first.

The token that was actually read next (trace.token_ids[cursor + 1], when there is one) is highlighted.
When it was generated, outlined bars show what sampling did: each candidate's probability in the
distribution the token was drawn from (after temperature, top-k and top-p: the trace's
sample_topk_ids/probs of that step), 0 for a candidate sampling dropped.

Speed: a step must not re-layout the plot or regenerate its axes. The candidates' texts are painted by
`RankAxis` (cached QStaticText per string, a fixed width) instead of being set as axis ticks; the
probability axis spans one of a few fixed ranges (`X_RANGES`: the smallest that fits the best candidate
with room for its value label), and `CachedAxis` keeps the drawing of each range it has shown, so
moving between ranges replays a picture instead of recomputing ticks; the value labels are drawn from
cached QStaticText too; and the title is only re-set when its text changes.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QFont, QFontMetricsF
from PySide6.QtWidgets import QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels.heatmap import (
    GraphicsPanel,
    Labels,
    PixmapAxis,
    add_static_plot,
    candidate_text,
    clamp,
    elide_label,
    show_token,
    style_plot,
    theme_font,
)
from memviz.panels.static_texts import StaticTexts
from memviz.panels.view_model import ViewModel

ROW_SPACING = 1.1  # a candidate's row is this many text lines high, at least
LABEL_CHARS = 10  # candidate texts are shown up to this many characters
X_ROOM = 1.18  # the probability axis reaches this far past the best candidate (room for its value)
# the probability axis spans 0..one of these (the bars fill at least about 2/3 of the width)
X_RANGES = (
    0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0,
)  # fmt: skip


def x_range_for(top: float) -> float:
    """The probability axis' upper end for a best candidate of probability `top`: the smallest of
    X_RANGES that is at least top * X_ROOM (1.0 at most)."""
    need = top * X_ROOM
    for end in X_RANGES:
        if end >= need:
            return end
    return X_RANGES[-1]


class RankAxis(pg.AxisItem):
    """A left axis showing one text per integer row (the candidates' texts), painted directly from
    cached QStaticText at a fixed width: changing the texts costs a repaint of this axis, not a
    regeneration of tick specs and a re-layout of the plot."""

    TICK = 5  # pixels

    def __init__(self, orientation: str = "left", **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self.texts: list[str] = []
        self._cache = StaticTexts()
        self.set_font(QFont())

    def set_font(self, font: QFont) -> None:
        """The texts' font; the axis is as wide as LABEL_CHARS digits (wider texts are elided)."""
        text_width = QFontMetricsF(font).horizontalAdvance("0" * LABEL_CHARS)
        self._cache.set_font(font, max_width=text_width)
        self.setWidth(int(text_width + self.TICK + 8))
        self.update()

    def set_texts(self, texts: list[str]) -> None:
        if texts != self.texts:
            self.texts = texts
            self.update()

    def paint(self, p, opt, widget) -> None:
        view = self.linkedView()
        if view is None:
            return
        rect = self.mapRectFromParent(self.geometry())
        right = rect.right()
        p.setPen(self.pen())
        p.drawLine(QPointF(right, rect.top()), QPointF(right, rect.bottom()))
        if not self.texts:
            return
        y0 = self.mapFromItem(view, view.mapFromView(QPointF(0, 0))).y()
        dy = self.mapFromItem(view, view.mapFromView(QPointF(0, 1))).y() - y0
        for row in range(len(self.texts)):
            y = y0 + row * dy
            if rect.top() - 1 <= y <= rect.bottom() + 1:
                p.drawLine(QPointF(right - self.TICK, y), QPointF(right, y))
        p.setPen(self.textPen())
        font = None
        limit = right - self.TICK - 3
        for row, text in enumerate(self.texts):
            y = y0 + row * dy
            if not rect.top() - 1 <= y <= rect.bottom() + 1:
                continue
            static, static_font = self._cache.entry(text)
            if static_font is not font:
                font = static_font
                p.setFont(font)
            size = static.size()
            p.drawStaticText(QPointF(limit - size.width(), y - size.height() / 2), static)


class CachedAxis(PixmapAxis):
    """An axis that keeps the picture of each (range, size) it has drawn, so switching back and
    forth between a few fixed ranges replays a picture instead of regenerating ticks. Call
    `forget()` after changing its look (pens, fonts)."""

    LIMIT = 32

    def __init__(self, orientation: str, **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self._pictures: dict[tuple, object] = {}

    def forget(self) -> None:
        self._pictures.clear()
        self.picture = None
        self.update()

    def paint(self, p, opt, widget) -> None:
        if self.picture is None:
            size = self.size()
            key = (tuple(self.range), size.width(), size.height())
            picture = self._pictures.get(key)
            if picture is None:
                super().paint(p, opt, widget)  # generates and plays self.picture
                if len(self._pictures) >= self.LIMIT:
                    self._pictures.clear()
                self._pictures[key] = self.picture
                return
            self.picture = picture
        super().paint(p, opt, widget)  # the picture, or its pixmap on screen


class DistributionPanel(GraphicsPanel):
    name = "distribution"
    title = "Next-token distribution"
    architectures = ()

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.finish_controls()
        self.setToolTip(
            "The model's probabilities for the next token after reading the current one, best first. "
            "Highlighted: the token that actually came next (read from the text, or sampled)."
        )
        self.plot: pg.PlotItem = add_static_plot(self.canvas.ci)
        title = self.plot.titleLabel

        def title_min_height_only() -> None:  # a long title must not widen the plot past a narrow dock
            title.setMinimumWidth(0)
            title.setMinimumHeight(title.itemRect().height())

        title.updateMin = title_min_height_only
        self.ranks = RankAxis("left")
        self.x_axis = CachedAxis("bottom")
        self.plot.setAxisItems({"left": self.ranks, "bottom": self.x_axis})
        self.plot.setLabel("bottom", "probability")
        self.x_axis.enableAutoSIPrefix(False)
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], pen=None)
        self.actual_bar = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], pen=None)
        # what sampling did: outlines over the bars, at each candidate's probability after sampling
        self.sample_bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], brush=None)
        self.sample_bars.setZValue(5)
        self.plot.addItem(self.bars)
        self.plot.addItem(self.actual_bar)
        self.plot.addItem(self.sample_bars)
        self.values = Labels(align=Qt.AlignmentFlag.AlignLeft)
        self.values.setZValue(6)
        self.plot.addItem(self.values, ignoreBounds=True)
        self.ids = np.zeros(0, dtype=np.int64)
        self.probs = np.zeros(0, dtype=np.float32)
        self.labels: list[str] = []
        self.highlight: int | None = None  # rank of the actual next token in the bars
        self.next_id: int | None = None
        self.sampled: np.ndarray | None = None  # shown candidates' probabilities after sampling
        self.step = -1
        self.x_max = 0.0  # the probability axis' upper end (one of X_RANGES)
        self._view_range: tuple[float, int] | None = None  # (x_max, k) last given to the view
        self._title: tuple[str, str, str] | None = None  # (text, colour, size) last set, text unescaped
        self._plain_look: tuple[str, str] | None = None  # (colour, size) of the title's plain-text font
        self.rows_fit: int | None = None  # candidates that fit the plot's height in its font
        self.plot.getViewBox().sigResized.connect(self._fit_rows)
        self.apply_theme(view.state)

    def _fit_rows(self, *_args) -> None:
        """As many candidates as fit one text line each (on a resize or a new font, not at a step)."""
        row = QFontMetricsF(self.ranks._cache.font).height() * ROW_SPACING
        rows = max(1, int(self.plot.getViewBox().height() // row))
        if rows != self.rows_fit:
            self.rows_fit = rows
            if self.trace is not None and self.step >= 0:
                self.render(self.view.state)
        elif self.trace is not None and self.step >= 0:  # a new width: values inside or after their bars
            self.values.set_items(self._value_items(self.view.state.theme_obj))

    def set_trace(self, trace: Trace | None) -> None:
        super().set_trace(trace)
        self.step = -1

    def token_text(self, token_id: int) -> str:
        return candidate_text(self.trace, token_id, None)

    def render(self, state: ViewState) -> None:
        trace = self.trace
        if trace is None or len(trace) == 0 or state.cursor < 0:
            return
        t = clamp(state.cursor, len(trace))
        self.step = t
        shown = self.rows_fit  # rows sized to the font: a short dock shows the best few
        self.ids = trace.array("topk_ids")[t][:shown]
        self.probs = trace.array("topk_probs")[t][:shown]
        k = len(self.probs)
        ranks = np.arange(k)
        self.labels = [self.token_text(i) for i in self.ids]
        self.next_id = trace.token_ids[t + 1] if t + 1 < len(trace) else None
        hits = np.flatnonzero(self.ids == self.next_id) if self.next_id is not None else []
        self.highlight = int(hits[0]) if len(hits) else None
        self.bars.setOpts(x0=np.zeros(k), y=ranks, width=self.probs)
        if self.highlight is None:
            self.actual_bar.setOpts(x0=[], y=[], width=[])
        else:
            self.actual_bar.setOpts(x0=[0.0], y=[self.highlight], width=[self.probs[self.highlight]])
        self.ranks.set_texts([show_token(s, LABEL_CHARS) for s in self.labels])
        self.sampled = self._sampled(trace, t + 1)
        if self.sampled is None:
            self.sample_bars.setOpts(x0=[], y=[], width=[])
        else:
            kept = self.sampled > 0  # a candidate sampling dropped has no outline
            self.sample_bars.setOpts(x0=np.zeros(int(kept.sum())), y=ranks[kept], width=self.sampled[kept])
        theme = state.theme_obj
        top = float(self.probs[0]) if k else 0.0
        if self.sampled is not None and k:
            top = max(top, float(self.sampled.max()))
        self.x_max = x_range_for(top)
        if self._view_range != (self.x_max, k):
            self._view_range = (self.x_max, k)
            self.plot.setRange(xRange=(0, self.x_max), yRange=(-0.6, k - 0.4), padding=0.0)
        self.values.set_items(self._value_items(theme))
        self._set_title(f"next token after step {t} '{show_token(trace.token_label(t), 10)}'", theme)
        if self.next_id is None:
            actual = "actual next token: none yet"
        else:
            kind = (
                "sampled; outlines: after sampling"
                if self.sampled is not None
                else ("sampled" if trace.generated[t + 1] else "read")
            )
            all_ids = trace.array("topk_ids")[t]  # the rank among every candidate kept, shown or not
            found = np.flatnonzero(all_ids == self.next_id)
            where = f"rank {int(found[0]) + 1}" if len(found) else f"not in the top {len(all_ids)}"
            actual = f"actual next ({kind}): '{show_token(trace.token_label(t + 1), 24)}', {where}"
        if actual != self.note.text():
            self.note.setText(actual)

    def _sampled(self, trace: Trace, step: int) -> np.ndarray | None:
        """The shown candidates' probabilities in the distribution token `step` was drawn from
        (0 where sampling dropped them); None for a read token or a trace without the record."""
        if step >= len(trace) or not trace.generated[step] or not trace.has("sample_topk_ids"):
            return None
        ids, probs = trace.array("sample_topk_ids")[step], trace.array("sample_topk_probs")[step]
        if not np.isfinite(probs).all():
            return None
        found = {int(i): float(p) for i, p in zip(ids, probs, strict=False) if i >= 0}
        return np.array([found.get(int(i), 0.0) for i in self.ids], dtype=np.float32)

    def _value_items(self, theme) -> list[tuple[float, float, str, str]]:
        """Each bar's value at its end; inside the bar (dark text) when it would pass the axis' end."""
        view = self.plot.getViewBox()
        per_pixel = self.x_max / max(view.width(), 1.0)
        metrics = QFontMetricsF(self.values.font)
        items = []
        for rank, p in enumerate(self.probs):
            text = f"{p:.4f}"
            end = float(p)
            after = float(self.sampled[rank]) if self.sampled is not None else 0.0
            if after > 0:  # kept by sampling: the model's probability, then the one drawn from
                end = max(end, after)
                text = f"{p:.3f}\u2192{after:.3f}"
            width = (metrics.horizontalAdvance(text) + 8) * per_pixel
            if end + width > self.x_max:
                x = max(end - width, 0.0)
                over_fill = x + 4 * per_pixel < float(p)  # on the filled bar, else inside an outline
                items.append((x, float(rank), text, "#111111" if over_fill else theme.foreground))
            else:
                items.append((end, float(rank), text, theme.foreground))
        return items

    def _set_title(self, text: str, theme) -> None:
        """The plot's title (its text escaped: tokens such as '<b>' are shown, not parsed)."""
        colour, size = theme.foreground, f"{theme.title_size}pt"
        if (text, colour, size) == self._title:
            return
        label = self.plot.titleLabel
        same_look = self._title is not None and self._title[1:] == (colour, size) and label.isVisible()
        self._title = (text, colour, size)
        if same_look:
            # only the text changed: swap it in place, as plain text in the title's colour and font,
            # and centre it. The title's height is the same, so this skips LabelItem.setText's HTML,
            # its size update and the plot's re-layout it triggers.
            label.text = html.escape(text, quote=False)
            if self._plain_look != (colour, size):
                self._plain_look = (colour, size)
                font = label.item.font()
                font.setPointSizeF(float(size.removesuffix("pt")))
                label.item.setFont(font)
                label.item.setDefaultTextColor(pg.mkColor(colour))
            label.item.setPlainText(text)
            elide_label(label)  # a narrow dock: the title's end gives way, the whole of it in the tooltip
            label.item.setPos(0, 0)
            bounds = label.itemRect()
            if bounds.width() <= label.rect().width() + 1:  # an elided title is as wide as its label
                target = QRectF(bounds)
                target.moveCenter(label.rect().center())
                label.item.setPos(target.topLeft() - bounds.topLeft())
                return
        self._plain_look = None
        self.plot.setTitle(html.escape(text, quote=False), color=colour, size=size)

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        theme = state.theme_obj
        if not hasattr(self, "plot"):
            return
        style_plot(self.plot, theme)
        self.ranks.set_font(theme_font(theme))
        self._fit_rows()
        self.x_axis.forget()
        if self._title is not None:
            text, self._title = self._title[0], None
            self._set_title(text, theme)
        self.bars.setOpts(brush="#6f8fb7" if theme.is_dark else "#9fb7d6")
        self.actual_bar.setOpts(brush=theme.accent)
        outline = pg.mkPen("#ffffff" if theme.is_dark else "#111111", width=1.5)
        outline.setCosmetic(True)
        self.sample_bars.setOpts(pen=outline, brush=None)
        self.values.font = theme_font(theme, -2)
        # the 0 at the origin: a label half past the axis' left end is drawn (pyqtgraph hides it)
        half_zero = QFontMetricsF(theme_font(theme, -1)).horizontalAdvance("0") / 2
        self.x_axis.setStyle(hideOverlappingLabels=int(half_zero) + 2)
        if self.trace is not None and self.step >= 0:
            self.values.set_items(self._value_items(theme))
