"""Starting the desktop app: the QApplication, the window, and what it opens first."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from memviz.errors import MemvizError

ORGANIZATION = "memviz"
APPLICATION = "memviz"


def application() -> QApplication:
    """The process's QApplication (created once)."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("memviz")
    return app


def initial_model(requested: str | None) -> str | None:
    """The model to open: the one asked for, else DEFAULT_MODEL if bundled, else the first bundled."""
    from memviz.backends.registry import DEFAULT_MODEL, bundled_models

    if requested:
        return requested
    models = bundled_models()
    names = [m.name for m in models]
    if DEFAULT_MODEL in names:
        return DEFAULT_MODEL
    return names[0] if names else None


def create_window(
    model: str | None = None,
    text: str | None = None,
    play: bool = False,
    trace=None,
    settings: QSettings | None = None,
):
    """Build and show the main window. With no model and no trace: the default model, or the picker."""
    from memviz.ui.main_window import MainWindow

    window = MainWindow(settings=settings)
    if text is not None:
        window.editor.setPlainText(text)
    window.show()
    if trace is not None:
        window.open_trace(trace)
        if play:
            window.view.update(cursor=0, follow=False)
            QTimer.singleShot(0, lambda: window.set_playing(True))
        return window
    spec = initial_model(model)
    if spec is None:
        window.message("no bundled model installed: choose a folder or a Hugging Face id")
        QTimer.singleShot(0, window.show_model_picker)
    else:
        window.load_model(spec, play=play)
    return window


def run_gui(
    model: str | None = None,
    text_file: str | Path | None = None,
    play: bool = False,
    trace_path: str | Path | None = None,
) -> int:
    """Open the app and run its event loop. Bad files fail before any window opens (MemvizError)."""
    text = None
    warnings: list[str] = []
    if text_file is not None:
        from memviz.textio import read_text_file

        text, warnings = read_text_file(text_file)
    trace = None
    if trace_path is not None:
        from memviz.core.trace import Trace

        trace = Trace.load(trace_path)
        if model:
            raise MemvizError("give --model or --trace, not both")
    app = application()
    window = create_window(model=model, text=text, play=play, trace=trace)
    for warning in warnings:
        window.message(warning)
    app.aboutToQuit.connect(window.shutdown)
    return int(app.exec())
