"""Pattern matches: the spans whose states are closest to a selected one (LSTMVis's match view).

Lists a search's matches (memviz.core.search), nearest first: rank, where (the run or a store
document), steps, distance, and the span's text in its context, the span itself highlighted. A
click on a match in the run moves the cursor to the span's last step (the state that completes the
match) and keeps the row highlighted; a document's match shows where it is, the cursor stays.

A search's result belongs to the run it searched: the app publishes it here (`publish`) and the
panel is offered for that run only, so a new run starts without stale matches. The panel draws
what was published and never searches itself (a panel never calls the model).
"""

from __future__ import annotations

import weakref

from PySide6.QtCore import QModelIndex, QRect, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from memviz.core.search import Match, SearchResult, match_rows
from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels.base import Panel
from memviz.panels.plot_style import theme_font
from memviz.panels.view_model import ViewModel

HEADERS = ("#", "steps", "distance", "text")  # "steps" says "where" when documents were searched too
TEXT_COLUMN = HEADERS.index("text")
WHERE_COLUMN = HEADERS.index("steps")
WHERE_SHARE = 0.3  # of the table's width at most: the text column keeps the rest
SELECTED_ALPHA = 40  # the selected row: a light wash of the accent, the span's accent text still reads
PIECES = Qt.ItemDataRole.UserRole  # the text column's (before, span, after)

# a published result per run; weak: a run that is gone takes its matches with it
_RESULTS: weakref.WeakKeyDictionary[Trace, SearchResult] = weakref.WeakKeyDictionary()


def publish(trace: Trace, result: SearchResult) -> None:
    """Show `result` for `trace` (the app, once a search has finished)."""
    _RESULTS[trace] = result


def result_for(trace: Trace | None) -> SearchResult | None:
    return None if trace is None else _RESULTS.get(trace)


def visible(text: str) -> str:
    """Whitespace a reader can see: a newline as ⏎, a tab as ⇥."""
    return text.replace("\r", "").replace("\n", "\u23ce").replace("\t", "\u21e5")


def distance_text(distance: float) -> str:
    if distance == int(distance) and abs(distance) < 1e9:
        return str(int(distance))  # the binary metric counts cells
    return f"{distance:.4g}"


class SpanDelegate(QStyledItemDelegate):
    """Draws the text column: the context dimmed, the span in the accent colour and bold."""

    def __init__(self, panel: MatchPanel) -> None:
        super().__init__(panel)
        self.panel = panel

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        theme = self.panel.state.theme_obj
        before, span, after = index.data(PIECES) or ("", "", "")
        painter.save()
        if option.state & QStyle.StateFlag.State_Selected:
            fill = QColor(theme.accent)
            fill.setAlpha(SELECTED_ALPHA)
            painter.fillRect(option.rect, fill)
        rect = option.rect.adjusted(6, 0, -6, 0)
        font = QFont(option.font)
        bold = QFont(font)
        bold.setBold(True)
        plain_fm, bold_fm = QFontMetrics(font), QFontMetrics(bold)
        dim = QColor(theme.foreground)
        dim.setAlpha(150)
        span_w = min(bold_fm.horizontalAdvance(span) + 2, rect.width())  # + 2: no elision by rounding
        before_w = min(plain_fm.horizontalAdvance(before), max(0, (rect.width() - span_w) // 2))
        x = rect.left()
        middle = int(Qt.AlignmentFlag.AlignVCenter)
        painter.setFont(font)
        painter.setPen(dim)
        shown = plain_fm.elidedText(before, Qt.TextElideMode.ElideLeft, before_w)
        painter.drawText(
            QRect(x, rect.top(), before_w, rect.height()), middle | Qt.AlignmentFlag.AlignRight, shown
        )
        x += before_w
        painter.setFont(bold)
        painter.setPen(QColor(theme.accent))
        shown = bold_fm.elidedText(span, Qt.TextElideMode.ElideRight, span_w)
        painter.drawText(QRect(x, rect.top(), span_w, rect.height()), middle, shown)
        x += span_w
        painter.setFont(font)
        painter.setPen(dim)
        rest = max(0, rect.right() - x)
        shown = plain_fm.elidedText(after, Qt.TextElideMode.ElideRight, rest)
        painter.drawText(QRect(x, rect.top(), rest, rect.height()), middle, shown)
        painter.restore()


class MatchPanel(Panel):
    name = "match"
    title = "Pattern matches"
    architectures = ()

    match_clicked = Signal(object)  # the Match clicked
    find_requested = Signal()  # "Find similar…": the app asks for the span, layer and units
    export_requested = Signal()  # "Export CSV…": the app asks for a file name

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.state = view.state
        self.result: SearchResult | None = None
        self.selected: Match | None = None
        self.setMinimumSize(360, 180)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        # the buttons in a row of their own; the heading and the table in one body widget, what export
        # paints (QWidget.render: the panel's own `render` is the panel contract's)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(6, 2, 6, 0)
        self.find_button = QToolButton()
        self.find_button.setText("Find similar\u2026")
        self.find_button.setToolTip("Search again: another span, layer or units")
        self.find_button.clicked.connect(self.find_requested)
        self.export_button = QToolButton()
        self.export_button.setText("Export CSV\u2026")
        self.export_button.setToolTip("The matches as a CSV file (the columns of memviz search --csv)")
        self.export_button.clicked.connect(self.export_requested)
        buttons.addStretch(1)
        buttons.addWidget(self.find_button)
        buttons.addWidget(self.export_button)
        outer.addLayout(buttons)
        self.body = QWidget()
        self.body.setObjectName("matchBody")
        outer.addWidget(self.body, 1)
        layout = QVBoxLayout(self.body)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(4)
        self.heading = QLabel("")
        self.heading.setWordWrap(True)
        self.heading.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(self.heading)
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(list(HEADERS))
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # the text elides
        header = self.table.horizontalHeader()
        for column in range(len(HEADERS) - 1):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(WHERE_COLUMN, QHeaderView.ResizeMode.Interactive)  # see fit_columns
        header.setSectionResizeMode(TEXT_COLUMN, QHeaderView.ResizeMode.Stretch)
        self.delegate = SpanDelegate(self)
        self.table.setItemDelegateForColumn(TEXT_COLUMN, self.delegate)
        self.table.cellClicked.connect(self._on_clicked)
        layout.addWidget(self.table, 1)
        self.setToolTip(
            "The spans whose states are closest to the query's (Run -> Find similar...), nearest first. "
            "Click a match in the run to move the cursor to its last step."
        )
        self.apply_theme(view.state)

    @classmethod
    def supports(cls, trace: Trace) -> bool:
        return result_for(trace) is not None

    def export_widget(self) -> QWidget:
        """What a figure shows (export.render): the heading and the table, without the buttons."""
        return self.body

    # -- data ---------------------------------------------------------------------------------------
    def set_trace(self, trace: Trace | None) -> None:
        super().set_trace(trace)
        self.show_result(result_for(trace))

    def show_result(self, result: SearchResult | None) -> None:
        self.result = result
        self.selected = None
        self.table.clearSelection()
        matches = result.matches if result is not None else []
        documents = any(not m.in_run for m in matches)
        self.table.horizontalHeaderItem(WHERE_COLUMN).setText("where" if documents else "steps")
        self.table.setRowCount(len(matches))
        for row, m in enumerate(matches):
            steps = f"{m.start}-{m.end}"
            where = f"{m.source} {steps}" if documents else steps
            cells = (str(m.rank), where, distance_text(m.distance), "")
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column in (0, 3):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)
            self.table.item(row, TEXT_COLUMN).setData(
                PIECES, (visible(m.before), visible(m.text), visible(m.after))
            )
            self.table.item(row, TEXT_COLUMN).setToolTip(f"{m.before}[{m.text}]{m.after}")
        self.fit_columns()
        self.heading.setText(self.describe(result))
        self.export_button.setEnabled(result is not None)

    def fit_columns(self) -> None:
        """The where/steps column as wide as its texts, up to WHERE_SHARE of the table (then elided)."""
        self.table.resizeColumnToContents(WHERE_COLUMN)
        cap = int(self.table.viewport().width() * WHERE_SHARE)
        if cap > 0 and self.table.columnWidth(WHERE_COLUMN) > cap:
            self.table.setColumnWidth(WHERE_COLUMN, cap)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self.fit_columns()

    @staticmethod
    def describe(result: SearchResult | None) -> str:
        if result is None:
            return "No search yet: Run -> Find similar..."
        compared = sum(result.searched.values())
        where = "the run" + (
            f" and {len(result.searched) - 1} document(s)" if len(result.searched) > 1 else ""
        )
        found = f"{len(result.matches)} nearest of {compared} spans in {where}"
        text = f"Query: {result.query.describe()}: \u201c{visible(result.query_text)}\u201d. {found}."
        return text + ("  " + " ".join(result.notes) if result.notes else "")

    def rows(self) -> list[list]:
        """The matches as CSV rows (header first): what Export CSV writes."""
        return match_rows(self.result) if self.result is not None else []

    # -- the user's clicks --------------------------------------------------------------------------
    def _on_clicked(self, row: int, _column: int) -> None:
        self.select(row)

    def select(self, row: int) -> Match | None:
        """Highlight match `row`; a match in the run moves the cursor to its last step."""
        if self.result is None or not 0 <= row < len(self.result.matches):
            return None
        match = self.result.matches[row]
        self.selected = match
        self.table.selectRow(row)
        if match.in_run and self.trace is not None and match.end < len(self.trace):
            self.view.update(cursor=match.end, follow=False)
        self.match_clicked.emit(match)
        return match

    # -- drawing ------------------------------------------------------------------------------------
    def render(self, state: ViewState) -> None:
        self.state = state
        result = result_for(self.trace)
        if result is not self.result:
            self.show_result(result)
        self.table.viewport().update()

    def apply_theme(self, state: ViewState) -> None:
        self.state = state
        theme = state.theme_obj
        size = theme.font_size
        accent = QColor(theme.accent)
        selected = f"rgba({accent.red()}, {accent.green()}, {accent.blue()}, {SELECTED_ALPHA})"
        self.setStyleSheet(
            f"#matchBody, QLabel {{ background: {theme.panel_background}; color: {theme.foreground};"
            f" font-size: {size}pt; }}"
            f" QTableWidget {{ background: {theme.panel_background}; color: {theme.foreground};"
            f" border: none; font-size: {size}pt; selection-background-color: {selected};"
            f" selection-color: {theme.foreground}; }}"
            f" QTableWidget::item {{ padding: 0px 6px; }}"
            f" QHeaderView::section {{ background: {theme.panel_background}; color: {theme.foreground};"
            f" border: none; border-bottom: 1px solid {theme.foreground}; padding: 2px 6px;"
            f" font-size: {size}pt; }}"
            f" QToolButton {{ color: {theme.foreground}; font-size: {size}pt; }}"
            f" MatchPanel {{ background: {theme.panel_background}; }}"
        )
        self.setAutoFillBackground(True)
        self.heading.setFont(theme_font(theme))
        self.table.viewport().update()
