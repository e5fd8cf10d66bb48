"""A finished experiment in the Experiments window: its figures (the same ExperimentFigure classes
`memviz experiment` saves, as widgets in the app's theme), results.csv as a table, and the buttons
to open the folder and export the figure on show (SVG, PDF or PNG at a scale, via the export
renderer, as the panels' Export... does)."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from memviz.core.view import ViewState
from memviz.errors import MemvizError
from memviz.experiments.result import ExperimentResult
from memviz.panels.view_model import ViewModel
from memviz.ui.jobs import one_line

Index = QModelIndex | QPersistentModelIndex


def cell_text(value) -> str:
    """A results.csv value as the table shows it: floats to 6 significant digits, booleans 0/1."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


class ResultsTable(QAbstractTableModel):
    """results.csv's rows and columns; each column's documentation is its header's tooltip."""

    def __init__(self, result: ExperimentResult, parent=None) -> None:
        super().__init__(parent)
        self.result = result
        self.names = list(result.columns)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt's names
        return 0 if parent.isValid() else len(self.result.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.names)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        value = self.result.rows[index.row()][self.names[index.column()]]
        if role == Qt.ItemDataRole.DisplayRole:
            return cell_text(value)
        if role == Qt.ItemDataRole.UserRole:
            return value
        if role == Qt.ItemDataRole.TextAlignmentRole and isinstance(value, (int, float)):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal:
            if role == Qt.ItemDataRole.DisplayRole:
                return self.names[section]
            if role == Qt.ItemDataRole.ToolTipRole:
                return self.result.columns[self.names[section]]
        elif role == Qt.ItemDataRole.DisplayRole:
            return str(section + 1)
        return None


def figure_classes(result: ExperimentResult) -> dict[str, type]:
    """stem -> ExperimentFigure class of each figure the result has something for (its experiment's
    registry entry; none for an experiment this memviz does not know)."""
    from memviz.experiments.registry import experiments
    from memviz.export.experiment_figure import figure_class

    spec = experiments().get(result.name)
    if spec is None:
        return {}
    classes = {stem: figure_class(path) for stem, path in spec.figures().items()}
    return {stem: cls for stem, cls in classes.items() if applies(cls, result)}


def applies(cls: type, result: ExperimentResult) -> bool:
    """Whether the figure has something to show (copy's heatmap: a transformer); True for a
    figure class that does not say."""
    check = getattr(cls, "applies", None)
    return bool(check(result)) if callable(check) else True


class ResultsView(QWidget):
    """One experiment's figures (tabs), its table and its folder."""

    def __init__(self, result: ExperimentResult, folder: Path, state: ViewState, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("experimentResults")
        self.result, self.folder = result, Path(folder)
        self.view = ViewModel(state)
        self.figures: dict[str, QWidget] = {}
        self.titles: dict[str, QLabel] = {}
        self.last_export: Path | None = None
        self.message = ""

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.heading = QLabel(self._heading())
        self.heading.setObjectName("resultsHeading")
        self.heading.setWordWrap(True)
        self.heading.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.heading)

        splitter = QSplitter(Qt.Orientation.Vertical)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("figureTabs")
        self.figure_errors: dict[str, str] = {}
        try:
            classes = figure_classes(result)
        except MemvizError as exc:
            classes, self.figure_errors["figure"] = {}, str(exc)
        for stem, cls in classes.items():
            try:
                figure = cls(self.view, result)
            except Exception as exc:  # noqa: BLE001 - a figure that cannot draw this result: the table stays
                self.figure_errors[stem] = one_line(exc)
                continue
            page = QWidget()
            page.setObjectName("figurePage")
            page.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
            box = QVBoxLayout(page)
            box.setContentsMargins(4, 4, 4, 4)
            title = QLabel(figure.figure_title(state))
            title.setObjectName("figureTitle")
            title.setWordWrap(True)
            box.addWidget(title)
            box.addWidget(figure, 1)
            self.figures[stem], self.titles[stem] = figure, title
            self.tabs.addTab(page, figure.title)
        for stem, reason in self.figure_errors.items():
            self.tabs.addTab(QLabel(f"cannot draw {stem}: {reason}"), stem)
        if not self.figures and not self.figure_errors:
            self.tabs.addTab(QLabel(f"no figure for experiment {result.name!r} in this memviz"), "figure")
        splitter.addWidget(self.tabs)
        self.table = QTableView()
        self.table.setObjectName("resultsTable")
        self.table_model = ResultsTable(result, self)
        self.table.setModel(self.table_model)
        self.table.setSortingEnabled(False)  # rows in results.csv's order
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        splitter.addWidget(self.table)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([620, 300])  # the table shows a dozen rows, the figure the rest
        layout.addWidget(splitter, 1)

        row = QHBoxLayout()
        self.open_folder_button = QPushButton("Open folder")
        self.open_folder_button.setToolTip(str(self.folder))
        self.open_folder_button.clicked.connect(self.open_folder)
        self.export_button = QPushButton("Export figure...")
        self.export_button.setToolTip("The figure on show as SVG, PDF or PNG (at a scale), in this theme")
        self.export_button.setEnabled(bool(self.figures))
        self.export_button.clicked.connect(self.export_dialog)
        row.addWidget(self.open_folder_button)
        row.addWidget(self.export_button)
        row.addStretch(1)
        layout.addLayout(row)

    def _heading(self) -> str:
        r = self.result
        rows = f"{len(r.rows):,} row" + ("" if len(r.rows) == 1 else "s")
        return f"<b>{r.name}</b>: {', '.join(r.model_names())} — {rows} in {self.folder}"

    # -- the theme -------------------------------------------------------------------------------
    def apply_theme(self, state: ViewState) -> None:
        self.view._state = state  # the figures draw once; only their look follows
        for figure in self.figures.values():
            figure.apply_theme(state)

    # -- the buttons -----------------------------------------------------------------------------
    def current_stem(self) -> str | None:
        stems = list(self.figures)
        index = self.tabs.currentIndex()
        return stems[index] if 0 <= index < len(stems) else None

    def open_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.folder)))

    def export_figure(self, path: str | Path, scale: float = 1.0, stem: str | None = None) -> Path:
        """The figure (the one on show unless `stem`) to `path`, in the window's theme; at its
        on-screen size, so the file looks like the window."""
        from memviz.export.experiment_figure import renderer_for
        from memviz.export.out_files import format_from_path

        stem = stem or self.current_stem()
        if stem is None:
            raise MemvizError("no figure to export")
        figure = self.figures[stem]
        size = (max(320, figure.width()), max(240, figure.height()))
        renderer = renderer_for(type(figure), self.result, theme=self.view.state.theme, size=size)
        try:
            out = renderer.save(path, fmt=format_from_path(Path(path)), scale=scale)
        finally:
            renderer.close()
        self.last_export = out
        return out

    def export_dialog(self) -> None:
        from memviz.options import SCALE_RANGE
        from memviz.ui.export_dialogs import FIGURE_FILTER, ask_scale, with_suffix

        stem = self.current_stem()
        if stem is None:
            return
        suggested = str(self.folder / f"{stem}-{self.view.state.theme}.png")
        path, chosen = QFileDialog.getSaveFileName(self, "Export figure", suggested, FIGURE_FILTER)
        if not path:
            return
        path = with_suffix(path, chosen, "png")
        scale = 1.0
        if path.lower().endswith(".png"):
            figure = self.figures[stem]
            picked = ask_scale(self, *SCALE_RANGE, (figure.width(), figure.height()))
            if picked is None:
                return
            scale = picked
        try:
            out = self.export_figure(path, scale=scale)
        except MemvizError as exc:
            self.message = f"Could not export the figure: {exc}"
        else:
            self.message = f"exported {out}"
        window = self.window()
        if hasattr(window, "say"):
            window.say(self.message)
