"""Starting the desktop app: the QApplication, the window, and what it opens first."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication

from memviz.errors import MemvizError

ORGANIZATION = "memviz"
APPLICATION = "memviz"


def application() -> QApplication:
    """The process's QApplication (created once)."""
    app = QApplication.instance()
    if app is None:
        # Qt's own file dialogs take the app's style sheet (both themes); a desktop's native one would not.
        QApplication.setAttribute(Qt.ApplicationAttribute.AA_DontUseNativeDialogs)
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


def store_model(path: str | Path) -> str:
    """The model a memory store belongs to (what `--model` defaults to with `--memory`): its source
    (a bundled name, a folder or a Hugging Face id), else its name. A file that is not a store is
    refused here, before any window opens."""
    import sqlite3

    from memviz.memory.store import MemoryStore

    store = MemoryStore.open(path)  # validates: exists, is a store, of a version this memviz reads
    try:
        with sqlite3.connect(f"file:{store.path}?mode=ro", uri=True) as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        store.close()
    source = meta.get("model_source") or meta.get("model_name")
    if not source or source == "?":
        raise MemvizError(f"{path}: the store does not say which model it belongs to: give --model")
    return str(source)


def show_window(window) -> None:
    """Show the window: as it was left (its stored geometry), else, on first start, filling the
    available screen (every panel gets room; without a window manager, e.g. under Xvfb, a maximise
    request alone would leave the window at its default size)."""
    if window.settings.contains("window/geometry"):
        window.show()
        return
    screen = window.screen()
    if screen is None or screen.availableGeometry().isEmpty():
        window.show()
        return
    window.setGeometry(screen.availableGeometry())
    window.showMaximized()


def create_window(
    model: str | None = None,
    text: str | None = None,
    play: bool = False,
    trace=None,
    settings: QSettings | None = None,
    memory: str | Path | None = None,
):
    """Build and show the main window. With no model and no trace: the default model, or the picker."""
    from memviz.ui.main_window import MainWindow

    window = MainWindow(settings=settings)
    if text is not None:
        window.editor.setPlainText(text)
    show_window(window)
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
        if memory is not None:
            window.open_memory(memory)  # once the model is loaded; a store of another model: an error
        window.load_model(spec, play=play)
    return window


def run_gui(
    model: str | None = None,
    text_file: str | Path | None = None,
    play: bool = False,
    trace_path: str | Path | None = None,
    memory: str | Path | None = None,
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
        if memory is not None:
            raise MemvizError("--memory recalls in a live run: give it with --model (or alone), not --trace")
    if memory is not None and not model:
        model = store_model(memory)  # the model the store belongs to
    app = application()
    window = create_window(model=model, text=text, play=play, trace=trace, memory=memory)
    for warning in warnings:
        window.message(warning)
    app.aboutToQuit.connect(window.shutdown)
    return int(app.exec())
