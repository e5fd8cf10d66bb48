"""The app side of export: right-click on any panel -> Export..., File -> Export all panels, Export
animation (progress, cancel), Copy figure, Export data (CSV), Save session / Open session.

What it needs from the window is spelled out in `ExportHost`. The window tells it when panels are
built (`watch_panels`) and when a saved trace opened (`restore_view`, connected to the window's
`trace_opened`): the view saved with a session comes back however it was opened. Figures are
rendered by memviz.export from the Trace, offscreen, at the panel's on-screen size: the file looks
like the screen.

Animations render one frame per timer tick on the UI thread (widgets live there) and encode the
file as a Job on a JobThread (memviz.ui.jobs), so the window keeps answering and Cancel works at
any moment (animation_export.AnimationWriter). The dialogs are built in export_dialogs.py.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QByteArray, QEvent, QObject, QPoint, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QDialog, QFileDialog, QMenu, QProgressDialog, QWidget

from memviz.core.trace import Trace
from memviz.errors import MemvizError
from memviz.export import render
from memviz.options import SCALE_RANGE
from memviz.panels.base import Panel
from memviz.panels.view_model import ViewModel
from memviz.ui.animation_export import AnimationWriter
from memviz.ui.export_dialogs import (
    ANIMATION_FILTER,
    FIGURE_FILTER,
    SESSION_FILTER,
    AnimationDialog,
    ask_format,
    ask_scale,
    ask_series,
    with_suffix,
)


class ExportHost(Protocol):
    """What export needs from the window (MainWindow is one; a test can give a small QMainWindow)."""

    view: ViewModel
    panels: dict[str, Panel]

    @property
    def trace(self) -> Trace | None: ...

    def add_file_action(self, action: QAction | None = None) -> QAction: ...

    def open_trace(self, source: str | Path | Trace) -> None: ...

    def message(self, text: str) -> None: ...

    def show_error(self, title: str, reason: str) -> None: ...

    def saveState(self, version: int = 0) -> QByteArray: ...  # noqa: N802 (Qt's names)

    def restoreState(self, state: QByteArray, version: int = 0) -> bool: ...  # noqa: N802

    def devicePixelRatioF(self) -> float: ...  # noqa: N802


class ExportActions(QObject):
    def __init__(self, host: ExportHost, parent: QWidget) -> None:
        super().__init__(parent)
        self.host = host
        self.window = parent  # the parent of its dialogs
        self.last_folder = str(Path.home())
        self.animations = AnimationWriter(
            parent, lambda text: self._say(text), lambda title, exc: self._fail(title, exc), self
        )
        self._make_actions()
        self._restored: Trace | None = None  # the trace whose saved view was last restored
        self._saved: tuple[int, int] | None = None  # (id of the trace, its steps) when last saved
        self.menu_hooks: list[Callable[[QMenu, Panel, QPoint | None], object]] = []  # add_menu_hook
        self.watch_panels()

    @property
    def job(self):
        """The animation being written (None when none is)."""
        return self.animations.job

    @property
    def progress(self) -> QProgressDialog | None:
        return self.animations.progress

    # -- menus -------------------------------------------------------------------------------
    def _action(self, text: str, slot, shortcut: str | None = None) -> QAction:
        action = QAction(text, self.window)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def _make_actions(self) -> None:
        w = self.host
        self.save_session_action = self._action("Save session...", self.save_session_dialog, "Ctrl+S")
        self.open_session_action = self._action("Open session...", self.open_session_dialog)
        self.export_all_action = self._action("Export all panels...", self.export_all_dialog, "Ctrl+E")
        self.export_animation_action = self._action(
            "Export animation...", lambda: self.export_animation_dialog()
        )
        self.export_csv_action = self._action("Export data (CSV)...", lambda: self.export_csv_dialog())
        w.add_file_action(None)
        for action in (self.save_session_action, self.open_session_action):
            w.add_file_action(action)
        w.add_file_action(None)
        for action in (self.export_all_action, self.export_animation_action, self.export_csv_action):
            w.add_file_action(action)

    @Slot()
    def watch_panels(self) -> None:
        """Catch right clicks on every widget of every panel (where a context menu is asked for).

        A filter on the panels' own widgets, not on the application: an application-wide filter is
        a Python call for every event of every widget, about a millisecond of each frame."""
        for panel in self.host.panels.values():
            for widget in (panel, *panel.findChildren(QWidget)):
                widget.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.ContextMenu and isinstance(obj, QWidget):
            panel = self.panel_of(obj)
            if panel is not None:
                self.panel_menu(panel, event.globalPos()).exec(event.globalPos())
                return True
        return False

    def panel_of(self, widget: QWidget):
        panels = set(map(id, self.host.panels.values()))
        while widget is not None:
            if id(widget) in panels:
                return widget
            widget = widget.parentWidget()
        return None

    def add_menu_hook(self, hook: Callable[[QMenu, Panel, QPoint | None], object]) -> None:
        """`hook(menu, panel, global_pos)` adds entries for the item under the mouse to a panel's
        right-click menu (the app's Intervene adds "ablate head 1.0" there) above Export..."""
        self.menu_hooks.append(hook)

    def panel_menu(self, panel, global_pos: QPoint | None = None) -> QMenu:
        menu = QMenu(panel)
        menu.addAction("Export...", lambda: self.export_figure_dialog(panel))
        menu.addAction("Copy figure", lambda: self.copy_figure(panel))
        menu.addAction("Export animation...", lambda: self.export_animation_dialog(panel))
        menu.addAction("Export data (CSV)...", lambda: self.export_csv_dialog(panel))
        for hook in self.menu_hooks:
            hook(menu, panel, global_pos)
        return menu

    # -- helpers -------------------------------------------------------------------------------
    def _trace(self):
        trace = self.host.trace
        if trace is None or len(trace) == 0:
            raise MemvizError("nothing to export yet: read some text first")
        return trace

    def _shown(self, panel=None):
        """What a panel draws now: B, or under a comparison A or B - A (CompareActions decides), so an
        export is what the user sees, and of B - A its title says so."""
        trace = self._trace()
        compare = getattr(self.host, "compare_actions", None)
        if compare is None:
            return trace
        return compare.shown_trace(panel.name if panel is not None else None) or trace

    def _state(self):
        state = self.host.view.state
        n = len(self._trace())
        cursor = state.cursor if 0 <= state.cursor < n else n - 1
        return replace(state, cursor=cursor, follow=False)

    def _say(self, text: str) -> None:
        self.host.message(text)

    def _fail(self, title: str, exc: Exception) -> None:
        self.host.show_error(title, str(exc))

    def _size_of(self, panel) -> tuple[int, int]:
        return max(200, panel.width()), max(150, panel.height())

    def _save_name(self, title: str, filter_: str, default_ext: str, name: str) -> str | None:
        path, chosen = QFileDialog.getSaveFileName(
            self.window, title, str(Path(self.last_folder) / name), filter_
        )
        if not path:
            return None
        path = with_suffix(path, chosen, default_ext)
        self.last_folder = str(Path(path).parent)
        return path

    # -- figures -------------------------------------------------------------------------------
    def export_figure(self, panel, path: str | Path, scale: float = 1.0) -> Path:
        return render.export_figure(
            self._shown(panel), type(panel), self._state(), path, scale=scale, size=self._size_of(panel)
        )

    def scale_range(self, panel) -> tuple[float, float]:
        """The PNG scales this panel can be exported at: the CLI's --scale bounds (memviz.options),
        and no more pixels than the CLI allows (a side, and in all)."""
        from memviz.export.cli import MAX_PIXELS, MAX_SIDE

        low, high = SCALE_RANGE
        width, height = self._size_of(panel)
        high = min(high, MAX_SIDE / max(width, height), math.sqrt(MAX_PIXELS / (width * height)))
        return low, max(low, math.floor(high * 100) / 100)

    def ask_scale(self, panel, default: float = 2.0) -> float | None:
        low, high = self.scale_range(panel)
        return ask_scale(self.window, low, high, self._size_of(panel), default)

    def export_figure_dialog(self, panel) -> None:
        try:
            self._trace()
            path = self._save_name("Export figure", FIGURE_FILTER, "png", f"{panel.name}.png")
            if not path:
                return
            scale = 1.0
            if path.lower().endswith(".png"):
                scale = self.ask_scale(panel)
                if scale is None:
                    return
            out = self.export_figure(panel, path, scale=scale)
            self._say(f"exported {out}")
        except MemvizError as exc:
            self._fail("Could not export the figure", exc)

    def figure_image(self, panel):
        renderer = render.FigureRenderer(
            type(panel), self._shown(panel), self._state(), size=self._size_of(panel)
        )
        try:
            return renderer.image(self.host.devicePixelRatioF())
        finally:
            renderer.close()

    def copy_figure(self, panel) -> None:
        try:
            QApplication.clipboard().setImage(self.figure_image(panel))
            self._say(f"copied {panel.title} to the clipboard")
        except MemvizError as exc:
            self._fail("Could not copy the figure", exc)

    def export_all(self, folder: str | Path, fmt: str = "png") -> list[Path]:
        trace = self._shown()
        classes = [type(p) for p in self.host.panels.values() if type(p).supports(trace)]
        return render.export_all(trace, self._state(), folder, fmt=fmt, classes=classes or None)

    def export_all_dialog(self) -> None:
        try:
            self._trace()
            folder = QFileDialog.getExistingDirectory(self.window, "Export all panels into", self.last_folder)
            if not folder:
                return
            fmt = ask_format(self.window)
            if fmt is not None:
                self.last_folder = folder
                files = self.export_all(folder, fmt)
                self._say(f"exported {len(files)} panels to {folder}")
        except MemvizError as exc:
            self._fail("Could not export the panels", exc)

    # -- animation -----------------------------------------------------------------------------
    def _current_panel(self):
        panels = list(self.host.panels.values())
        focus = QApplication.focusWidget()
        return (self.panel_of(focus) if focus is not None else None) or (panels[0] if panels else None)

    def export_animation_dialog(self, panel=None) -> None:
        """From a panel's menu: that panel; from File: the dialog lets the user choose the panel
        (the one that last had focus first)."""
        try:
            trace = self._trace()
            current = panel or self._current_panel()
            if current is None:
                raise MemvizError("no panel to animate")
            dialog = AnimationDialog(self.window, self.host.panels, current, len(trace))
            self.animation_dialog = dialog  # tests fill it in
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return
            panel = self.host.panels.get(dialog.choice.currentData()) or current
            path = self._save_name("Export animation", ANIMATION_FILTER, "gif", f"{panel.name}.gif")
            if path:
                self.start_animation(
                    panel, path, dialog.start.value(), dialog.stop.value(), dialog.fps.value()
                )
        except MemvizError as exc:
            self._fail("Could not export the animation", exc)

    def start_animation(self, panel, path, start: int, stop: int, fps: float = 4.0):
        """Begin writing; returns the job. Frames come one per timer tick; the dialog shows progress."""
        from memviz.export.animate import AnimationJob

        return self.animations.start(
            lambda: AnimationJob(
                self._trace(),
                type(panel),
                self._state(),
                path,
                start=start,
                stop=stop,
                fps=fps,
                size=self._size_of(panel),
            )
        )

    def shutdown(self) -> None:
        """The window closes: stop an animation being written and wait for the encoder."""
        self.animations.shutdown()

    def cancel_animation(self) -> None:
        self.animations.cancel()

    # -- data ----------------------------------------------------------------------------------
    def export_csv(self, path, series: str | None = None) -> Path:
        from memviz.export.data import default_series, export_csv

        trace, state = self._trace(), self._state()
        series = series or default_series(trace)
        compare = getattr(self.host, "compare_actions", None)
        if compare is not None and compare.shown_trace() is not trace:
            return compare.export_csv(path, series, state)  # A, or B - A (its headers say `B-A`)
        return export_csv(
            trace, path, series=series, layer=state.layer, head=state.head, unit=state.unit, step=state.cursor
        )

    def export_csv_dialog(self, panel=None) -> None:
        from memviz.export.data import default_series

        try:
            trace = self._trace()
            if panel is not None and callable(getattr(panel, "rows", None)):  # a table panel: its rows
                self._export_panel_rows(panel)
                return
            choices = [default_series(trace)] + (["topk"] if default_series(trace) != "topk" else [])
            series = choices[0]
            if panel is not None and "distribution" in panel.name:
                series = "topk"
            elif len(choices) > 1:
                series = ask_series(self.window, choices)
                if series is None:
                    return
            path = self._save_name("Export data", "CSV (*.csv)", "csv", f"{series}.csv")
            if path:
                self._say(f"exported {self.export_csv(path, series)}")
        except MemvizError as exc:
            self._fail("Could not export the data", exc)

    def _export_panel_rows(self, panel) -> None:
        from memviz.export.data import write_csv

        rows = panel.rows()
        if not rows:
            raise MemvizError(f"{panel.title}: nothing to export yet")
        path = self._save_name("Export data", "CSV (*.csv)", "csv", f"{panel.name}.csv")
        if path:
            self._say(f"exported {write_csv(rows, path)}")

    # -- sessions ------------------------------------------------------------------------------
    def save_session(self, path) -> Path:
        from memviz.export.session_file import save_session

        trace = self._trace()
        extra = {"window_state": base64.b64encode(bytes(self.host.saveState())).decode("ascii")}
        out = save_session(path, trace, self.host.view.state, extra=extra)
        self._saved = (id(trace), len(trace))
        return out

    def is_saved(self, trace: Trace) -> bool:
        """Whether this trace, with all its steps, was saved (nothing would be lost)."""
        return self._saved == (id(trace), len(trace))

    def save_session_dialog(self) -> bool:
        """Ask where, and save; True when it was saved."""
        try:
            self._trace()
            path = self._save_name("Save session", SESSION_FILTER, "memviz", "session.memviz")
            if path:
                self._say(f"saved session {self.save_session(path)}")
                return True
        except MemvizError as exc:
            self._fail("Could not save the session", exc)
        return False

    def open_session(self, path) -> None:
        self.host.open_trace(path)
        self.restore_view(self.host.trace)  # done already if the host signalled `trace_opened`

    def open_session_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open session", self.last_folder, SESSION_FILTER)
        if path:
            try:
                self.open_session(path)
            except MemvizError as exc:
                self._fail("Could not open the session", exc)

    @Slot(object)
    def restore_view(self, trace: Trace | None) -> None:
        """Bring back the view (and the window's layout) saved with a session's trace, once per trace."""
        from dataclasses import asdict

        from memviz.export.session_file import saved_view

        if trace is None or trace is self._restored:
            return
        self._restored = trace
        saved = saved_view(trace)
        if saved is None:
            return
        state, extra = saved
        fields = asdict(state)
        fields.pop("follow", None)
        self.host.view.update(follow=False, **fields)
        encoded = extra.get("window_state")
        if encoded:
            try:
                self.host.restoreState(QByteArray(base64.b64decode(encoded)))
            except (ValueError, TypeError):
                pass


def install_export_actions(window: ExportHost) -> ExportActions:
    """Add the export and session actions to a window that is its own host (a QMainWindow); returns
    them. MainWindow makes its own and also connects `trace_opened` and `panels_built` to them."""
    actions = ExportActions(window, window)
    window.export_actions = actions
    return actions
