"""Run -> Find similar...: pattern search in the app, its results in the Pattern matches panel.

The token strip has no range selection, so the span is asked for in a small dialog whose defaults
come from what the user is looking at: the five steps that end at the cursor, the layer shown,
every unit (or those typed, recurrent models only). One dialog, one place for the span, layer,
units and distance, with the cursor as the anchor a user already moves.

The search runs off the UI thread: on the session's worker when it needs the model (a transformer's
layer states, a store's documents), else on a model-free job thread (a recurrent run's states are in
the trace). Its result is published for the run it searched (memviz.panels.match) and the panel is
shown; a click on a match there moves the cursor (the panel does that through the view model).
"""

from __future__ import annotations

import weakref
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from memviz.core import search as pattern
from memviz.core.trace import Trace
from memviz.errors import MemvizError
from memviz.panels.match import MatchPanel, publish, visible
from memviz.ui.jobs import Job, JobThread

DEFAULT_SPAN = 5  # steps, ending at the cursor


class FindSimilarDialog(QDialog):
    """The span (steps A..B), layer, units, distance and how many matches."""

    def __init__(
        self, parent: QWidget, trace: Trace, cursor: int, layer: int, store_name: str | None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Find similar")
        self.trace = trace
        last = len(trace) - 1
        end = min(max(cursor, 0), last) if cursor >= 0 else last
        form = QFormLayout(self)
        span = QHBoxLayout()
        self.start = QSpinBox()
        self.end = QSpinBox()
        for box in (self.start, self.end):
            box.setRange(0, last)
        self.start.setValue(max(0, end - DEFAULT_SPAN + 1))
        self.end.setValue(end)
        span.addWidget(self.start)
        span.addWidget(self.end)
        form.addRow("Steps (from, to)", span)
        self.preview = QLabel()  # the span's text, as the steps change
        self.preview.setTextFormat(Qt.TextFormat.PlainText)
        form.addRow("Text", self.preview)
        for box in (self.start, self.end):
            box.valueChanged.connect(self._show_text)
        self._show_text()
        self.layer = QSpinBox()
        self.layer.setRange(0, max(0, pattern.num_layers(trace) - 1))
        self.layer.setValue(min(max(layer, 0), self.layer.maximum()))
        form.addRow("Layer", self.layer)
        self.units = QLineEdit()
        recurrent = trace.kind != "transformer"
        self.units.setEnabled(recurrent)
        self.units.setPlaceholderText(
            "all units (or e.g. 3,17,40)" if recurrent else "a transformer's layer is searched whole"
        )
        form.addRow("Units", self.units)
        self.distance = QComboBox()
        self.distance.addItems(pattern.METRICS)
        self.distance.setToolTip(
            "euclidean: L2 distance over the span's states; binary (LSTMVis): how many (step, unit) "
            "cells are on (above the threshold) where the query's are off, or the reverse"
        )
        form.addRow("Distance", self.distance)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(-1e6, 1e6)
        self.threshold.setDecimals(3)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(pattern.DEFAULT_THRESHOLD)
        form.addRow("Binary: on above", self.threshold)
        self.distance.currentTextChanged.connect(lambda m: self.threshold.setEnabled(m == "binary"))
        self.threshold.setEnabled(False)
        self.top = QSpinBox()
        self.top.setRange(1, 1000)
        self.top.setValue(pattern.DEFAULT_TOP)
        form.addRow("Matches", self.top)
        self.store = QCheckBox(
            f"also the documents of {store_name}" if store_name else "no memory store open"
        )
        self.store.setEnabled(store_name is not None)
        form.addRow("Memory", self.store)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _show_text(self) -> None:
        start, end = sorted((self.start.value(), self.end.value()))
        labels = self.trace.token_labels[start : end + 1]
        text = visible("".join(labels))
        self.preview.setText(f"\u201c{text[:60]}\u2026\u201d" if len(text) > 60 else f"\u201c{text}\u201d")

    def query(self) -> pattern.Query:
        """The query as typed (MemvizError for units that do not parse)."""
        start, end = sorted((self.start.value(), self.end.value()))
        return pattern.Query(
            layer=self.layer.value(),
            start=start,
            end=end,
            units=pattern.parse_units(self.units.text()) if self.units.isEnabled() else None,
            top=self.top.value(),
            metric=self.distance.currentText(),
            threshold=self.threshold.value(),
        )


class MatchActions(QObject):
    """Run -> Find similar..., the search jobs, and the Pattern matches panel's buttons."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.find_action = QAction("Find similar...", window)
        self.find_action.setShortcut(QKeySequence("Ctrl+Shift+F"))
        self.find_action.setToolTip(
            "Find the spans whose states at a layer are closest to steps A..B (pattern search)"
        )
        self.find_action.triggered.connect(self.find_dialog)
        self.jobs = JobThread("memviz-search", self)
        self.job: Job | None = None
        self._searched: Trace | None = None  # the run the job in flight searches
        self._watched: weakref.WeakSet = weakref.WeakSet()
        self.last_error = ""
        window.panels_built.connect(self._watch_panels)
        window.playback.actions_changed.connect(self.update_actions)
        window.playback.trace_changed.connect(lambda _trace: self.update_actions())
        self.update_actions()

    def update_actions(self) -> None:
        trace = self.window.trace
        self.find_action.setEnabled(trace is not None and len(trace) > 1)

    def _store(self):
        controls = getattr(self.window, "memory_controls", None)
        return getattr(controls, "store", None)

    # -- the user's requests ---------------------------------------------------------------------
    def find_dialog(self) -> None:
        trace = self.window.trace
        if trace is None or len(trace) < 2:
            self._refuse("read some text first")
            return
        store = self._store()
        state = self.window.view.state
        dialog = FindSimilarDialog(
            self.window, trace, state.cursor, state.layer, getattr(store, "path", None) and store.path.name
        )
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        try:
            query = dialog.query()
        except MemvizError as exc:
            self._refuse(str(exc))
            return
        self.find(query, with_store=dialog.store.isChecked())

    def find(self, query: pattern.Query, with_store: bool = False) -> bool:
        """Search the run shown (and the open store's documents); False (one message) if refused."""
        trace = self.window.trace
        if trace is None:
            return self._refuse("nothing to search: read some text first")
        try:
            pattern.check_query(trace, query)
        except MemvizError as exc:
            return self._refuse(str(exc))
        store = self._store() if with_store else None
        if with_store and store is None:
            return self._refuse("no memory store is open (View -> Memory settings)")
        needs_model = pattern.needs_model(trace, store is not None)
        worker = self.window.worker
        if needs_model and (self.window.info is None or worker.session is None):
            return self._refuse("load the model that made this run: its layer states come from the model")
        if self.job is not None and not self.job.ended:
            self.job.cancel()

        def work(job: Job) -> pattern.SearchResult:  # on the worker or the job thread
            backend = worker.session.backend if needs_model else None
            return pattern.search(
                trace,
                query,
                backend=backend,
                store=store,
                progress=lambda done, total: job.report(done, total, "searching the documents"),
                cancelled=lambda: job.cancelled,
            )

        job = Job(work, "searching for similar spans")
        job.finished.connect(self._on_finished)
        job.failed.connect(self._on_failed)
        self.job, self._searched = job, trace
        self.window.message(f"searching: {query.describe()}")
        (worker if needs_model else self.jobs).submit(job)
        return True

    # -- results ---------------------------------------------------------------------------------
    @Slot(object)
    def _on_finished(self, result: pattern.SearchResult) -> None:
        trace = self._searched
        if self.job is None or self.job.result is not result or trace is not self.window.trace:
            return  # a newer search, or the run is gone
        publish(trace, result)
        window = self.window
        window.docks_part.rebuild(trace)  # the panel is offered for a run with a result
        panel = window.panels.get(MatchPanel.name)
        if panel is not None:
            window.docks_part.safe(panel, "set_trace", trace)
            dock = window.docks.get(MatchPanel.name)
            if dock is not None:
                dock.show()
                dock.raise_()
        window.schedule_redraw()
        best = result.matches[0] if result.matches else None
        where = (
            f"; nearest: steps {best.start}-{best.end} ({best.source}), distance {best.distance:.4g}"
            if best
            else ""
        )
        window.message(f"found {len(result.matches)} similar spans{where}")

    @Slot(str)
    def _on_failed(self, reason: str) -> None:
        if self.job is not None and self.job.error == reason:
            self.window.show_error("Could not search", reason)

    def wait(self, timeout_s: float = 30.0) -> bool:
        """Block until the search in flight has ended (tests, shutdown)."""
        return self.job is None or self.job.wait(timeout_s)

    def shutdown(self) -> None:
        if self.job is not None:
            self.job.cancel()
        self.jobs.stop()

    # -- the panel's buttons -----------------------------------------------------------------------
    @Slot()
    def _watch_panels(self) -> None:
        panel = self.window.panels.get(MatchPanel.name)
        if panel is not None and panel not in self._watched:
            self._watched.add(panel)
            panel.find_requested.connect(self.find_dialog)
            panel.export_requested.connect(self.export_dialog)
            panel.match_clicked.connect(self._mark_in_strip)

    def _mark_in_strip(self, match) -> None:
        """A match in the run is outlined in the token strip (the panel moved the cursor to its end)."""
        strip = getattr(getattr(self.window, "strip_view", None), "strip", None)
        if strip is not None:
            strip.set_marked_span(match.start, match.end) if match.in_run else strip.set_marked_span(None)

    def export_csv(self, path: str | Path) -> Path:
        from memviz.export.data import write_csv

        panel = self.window.panels.get(MatchPanel.name)
        rows = panel.rows() if panel is not None else []
        if not rows:
            raise MemvizError("no matches to export: Run -> Find similar... first")
        return write_csv(rows, path)

    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.window, "Export the matches", "matches.csv", "CSV (*.csv)")
        if not path:
            return
        try:
            self.window.message(f"exported {self.export_csv(path)}")
        except MemvizError as exc:
            self.window.show_error("Could not export the matches", str(exc))

    def _refuse(self, reason: str) -> bool:
        self.last_error = reason
        self.window.message(f"find similar: {reason}")
        return False
