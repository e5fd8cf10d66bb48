"""The token strip: the text read and generated, one box per token, tinted like Karpathy's char-rnn
pictures by the selected signal; the current token outlined; generated tokens marked. Click to scrub.

The strip is a view of the Trace like the panels: `values(state)` are the trace's own numbers.

The parts: token_signals (which signals, each token's value, tint strengths and scale), token_layout
(boxes in lines, word wrap), token_widget (TokenStrip: painting, tooltips, clicks), token_legend
(TokenLegend); this module joins strip and legend in TokenStripView and re-exports every name.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QScrollArea, QWidget

from memviz.core.view import ViewState
from memviz.panels.view_model import ViewModel
from memviz.ui.token_layout import StripLayout, wrap_before
from memviz.ui.token_legend import TokenLegend
from memviz.ui.token_signals import (
    SIGNALS,
    available_signals,
    display_text,
    prediction_classes,
    scale_text,
    signal_values,
    tint_scale,
    tint_strengths,
)
from memviz.ui.token_widget import NEGATIVE, PLACEHOLDER, POSITIVE, TokenStrip

__all__ = [
    "NEGATIVE",
    "PLACEHOLDER",
    "POSITIVE",
    "SIGNALS",
    "StripLayout",
    "TokenLegend",
    "TokenStrip",
    "TokenStripView",
    "available_signals",
    "display_text",
    "prediction_classes",
    "scale_text",
    "signal_values",
    "tint_scale",
    "tint_strengths",
    "wrap_before",
]


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
