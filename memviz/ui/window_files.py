"""The window's files: a text opened into the editor, a saved trace opened (from the dialog, a
session or `--trace`) and shown without a model. A mixin for MainWindow."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from memviz.core.trace import Trace
from memviz.errors import MemvizError
from memviz.ui.status import warning_box


class TraceFiles:
    """MainWindow's file slots: texts into the editor, saved traces shown without a model."""

    def open_trace(self, source: str | Path | Trace) -> None:
        """Show a saved trace without a model: scrub and replay it, nothing is recomputed. The editor
        shows the trace's text (what was read), not the text typed before."""
        trace = source if isinstance(source, Trace) else Trace.load(source)
        self.playback.open_trace(trace)
        self.editor.setPlainText(trace.text())  # from the tokens' bytes: split characters whole
        if not isinstance(source, Trace):
            self.message(f"opened {source}: {len(trace)} tokens")
        self.trace_opened.emit(trace)

    def open_text_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a text", str(Path.home()), "Text (*.txt *.md *.py *.rst);;All files (*)"
        )
        if path:
            self.editor.load_file(path)

    def _on_text_file_loaded(self, path: str, warnings: list) -> None:
        self.message(f"opened {path}: Ctrl+Enter in the editor (or Space) reads it")
        for warning in warnings:  # after "opened": the warning is the line left showing
            self.message(f"warning: {warning}")
        if warnings:
            self.error_box = warning_box(
                self, f"{Path(path).name} was opened with a warning", "\n".join(warnings)
            )
        self.playback.text_replaced()

    def open_trace_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a trace", str(Path.home()), "memviz traces (*.memviz)"
        )
        if path:
            try:
                self.open_trace(path)
            except MemvizError as exc:
                self.show_error("Could not open the trace", str(exc))
