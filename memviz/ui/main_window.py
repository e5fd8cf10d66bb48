"""The main window, the shell: it builds the window and owns its parts, and wires them together.

The parts, each in its own module:
    playback.Playback      the play / step / read / generate / replay state machine (no widgets)
    worker.Worker          the session's worker: the one thread that runs the model
    docks.Docks            the panels' docks, their default layout and the saved layouts
    actions                the window's own actions, declared as data (File, View menus)
    status.StatusLine      the status bar
    view_bar.ViewBar       tint, layer, head and unit
    transport              the transport and generate toolbars
    pacing.RedrawPacer     redraws coalesced to the frame budget
    memory_controls        the long-term memory dock
    export_actions         export and sessions (it learns of traces opened from `trace_opened`)

The window only draws: it redraws from the Trace when the worker reports a step.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMainWindow, QMessageBox, QSplitter, QToolBar, QWidget

from memviz.core.trace import Trace
from memviz.core.view import THEMES, ViewState
from memviz.errors import MemvizError
from memviz.panels.base import Panel
from memviz.panels.view_model import ViewModel
from memviz.ui.actions import TOOLBAR, build_actions
from memviz.ui.colour_scale_menu import add_colour_scale_menu
from memviz.ui.docks import LAYOUT_VERSION, Docks
from memviz.ui.model_picker import ModelPicker, remember_model
from memviz.ui.pacing import MAX_REDRAW_INTERVAL_MS, REDRAW_INTERVAL_MS, RedrawPacer
from memviz.ui.playback import Playback
from memviz.ui.resources import style_sheet
from memviz.ui.status import StatusLine, error_box, warning_box
from memviz.ui.text_editor import DEFAULT_TEXT, TextEditor
from memviz.ui.token_strip import TokenStripView
from memviz.ui.transport import GenerateBar, Transport
from memviz.ui.view_bar import ViewBar
from memviz.ui.worker import WorkerThread

# the names the window module has always had
__all__ = ["LAYOUT_VERSION", "MAX_REDRAW_INTERVAL_MS", "REDRAW_INTERVAL_MS", "MainWindow", "style_sheet"]

MIN_WIDTH, MIN_HEIGHT = 960, 600  # the toolbars in two rows and two docks side by side still fit


class MainWindow(QMainWindow):
    panels_built = Signal()  # after the docks were rebuilt for a trace: `panels` may hold new panels
    trace_opened = Signal(object)  # a saved trace was opened (File -> Open trace, a session, --trace)
    # Quitting or switching model with a run that has steps and was not saved asks first (Save /
    # Discard / Cancel). Tests and scripts switch the question off here (or per window).
    ask_before_discarding: bool = True

    def __init__(self, settings: QSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("memvizMainWindow")
        self.setWindowTitle("memviz")
        self.settings = settings or QSettings("memviz", "memviz")
        theme = str(self.settings.value("view/theme", "dark"))
        self.view = ViewModel(ViewState(theme=theme if theme in THEMES else "dark"))
        self.render_count = 0
        self.error_box: QMessageBox | None = None
        self.picker: ModelPicker | None = None
        self._closed = False

        self._worker_thread = WorkerThread(self)
        self.worker = self._worker_thread.worker
        self.playback = Playback(self.worker, self.view, self)
        self.pacer = RedrawPacer(self.redraw, self)
        self._redraw_timer = self.pacer.timer

        self._build_central()
        self._build_toolbars()
        self._build_menus()
        self.status = StatusLine(self.statusBar())
        self.messages = self.status.messages  # everything shown in the status bar, for tests and the log
        self.busy, self.model_label = self.status.busy, self.status.model_label
        self.step_label, self.rate_label = self.status.step_label, self.status.rate_label
        self.context_label = self.status.context_label
        self.docks_part = Docks(self, self.view, self.settings, self.panels_menu, self.message)
        self.docks: dict[str, QDockWidget] = self.docks_part.docks
        self.panels: dict[str, Panel] = self.docks_part.panels
        self.docks_part.built.connect(self.panels_built)
        self.docks_part.shown.connect(self.schedule_redraw)
        self._connect_playback()
        self.view.changed.connect(self._on_view_changed)
        from PySide6.QtWidgets import QApplication

        QApplication.instance().focusChanged.connect(self._on_focus_changed)
        self.apply_theme()
        self.setMinimumSize(MIN_WIDTH, MIN_HEIGHT)  # smaller, the toolbars and the docks overlap
        self._restore_geometry()
        self._memory_after_load: str | None = None  # a store to open once the model is there
        self._update_actions()
        self._update_status()
        from memviz.ui.export_actions import ExportActions

        # File -> Export / Save session, right-click Export... on panels
        self.export_actions = ExportActions(self, self)
        self.trace_opened.connect(self.export_actions.restore_view)
        self.panels_built.connect(self.export_actions.watch_panels)
        self._build_memory_dock()

    # == what the playback controller knows ==========================================================
    @property
    def trace(self) -> Trace | None:
        return self.playback.trace

    @property
    def info(self):
        """ModelInfo of the loaded model; None when only a saved trace is shown."""
        return self.playback.info

    @property
    def model_spec(self) -> str | None:
        return self.playback.model_spec

    @property
    def runs_finished(self) -> int:
        return self.playback.runs_finished

    @property
    def _loading(self) -> str | None:
        return self.playback.loading

    # == building =====================================================================================
    def _build_central(self) -> None:
        self.editor = TextEditor()
        self.editor.setPlainText(DEFAULT_TEXT)
        self.editor.file_loaded.connect(self._on_text_file_loaded)
        self.editor.file_failed.connect(lambda reason: self.show_error("Could not open the text", reason))
        self.editor.leave_requested.connect(self.give_keys_to_player)
        self.strip_view = TokenStripView(self.view)
        self.strip = self.strip_view.strip
        splitter = QSplitter(Qt.Vertical)
        splitter.setObjectName("centralSplitter")
        splitter.addWidget(self.editor)
        splitter.addWidget(self.strip_view)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([110, 400])
        self.setCentralWidget(splitter)
        self.setDockNestingEnabled(True)

    def _build_toolbars(self) -> None:
        self.main_toolbar = QToolBar("Main", self)
        self.main_toolbar.setObjectName("mainToolBar")
        self.addToolBar(self.main_toolbar)
        self.transport = Transport(self)
        self.addToolBar(self.transport)
        self.generate_bar = GenerateBar(self)
        self.generate_bar.generate_action.triggered.connect(self.generate)
        self.addToolBar(self.generate_bar)
        self.addToolBarBreak()
        self.view_bar = ViewBar(self.view, self)
        self.layer_spin, self.head_spin = self.view_bar.layer_spin, self.view_bar.head_spin
        self.unit_spin, self.signal_combo = self.view_bar.unit_spin, self.view_bar.signal_combo
        self._spin_actions = self.view_bar.spin_actions
        self.addToolBar(self.view_bar)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        self.file_menu = bar.addMenu("&File")
        self.view_menu = bar.addMenu("&View")
        self.panels_menu = self.view_menu.addMenu("Panels")
        self.window_actions = build_actions(self, {"file": self.file_menu, "view": self.view_menu})
        for name in TOOLBAR:
            self.main_toolbar.addAction(self.window_actions[name])
        a = self.window_actions
        self.open_text_action, self.open_model_action = a["open_text"], a["open_model"]
        self.open_folder_action, self.open_trace_action = a["open_folder"], a["open_trace"]
        self.quit_action, self.reset_layout_action = a["quit"], a["reset_layout"]
        self._file_extra_separator = self.file_menu.addSeparator()  # File actions added later go here
        self._file_quit_separator = self.file_menu.addSeparator()
        self.file_menu.addAction(self.quit_action)

        self.view_menu.addSeparator()
        self.theme_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        group.setExclusive(True)
        for name, label in (("dark", "Dark theme"), ("talk", "Talk theme (light, large)")):
            action = QAction(label, self, checkable=True)
            action.setChecked(self.view.state.theme == name)
            action.triggered.connect(lambda _checked=False, n=name: self.set_theme(n))
            group.addAction(action)
            self.view_menu.addAction(action)
            self.theme_actions[name] = action
        self.scale_actions = add_colour_scale_menu(self.view_menu, self.view)
        self.view_menu.addSeparator()
        for toolbar in (self.main_toolbar, self.transport, self.generate_bar, self.view_bar):
            self.view_menu.addAction(toolbar.toggleViewAction())

        self.run_menu = bar.addMenu("&Run")
        t = self.transport
        for action in (t.play_action, t.forward_action, t.back_action, t.reset_action):
            self.run_menu.addAction(action)
        self.run_menu.addSeparator()
        self.run_menu.addAction(self.generate_bar.generate_action)
        self.run_menu.addSeparator()
        # Esc moves the keys between the editor (typing) and the player (Space, Left, Right, Home)
        self.edit_text_action = QAction("Edit the text / back to the player", self)
        self.edit_text_action.setShortcut(QKeySequence(Qt.Key_Escape))
        self.edit_text_action.setToolTip(
            "Esc: type in the editor; Esc again (or Ctrl+Enter) gives the keys back"
        )
        self.edit_text_action.triggered.connect(self.toggle_editor_focus)
        self.run_menu.addAction(self.edit_text_action)
        # Ctrl+Enter anywhere in the window (in the editor too): read the text, keys to the player
        self.read_text_action = QAction("Read the text", self)
        self.read_text_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.read_text_action.triggered.connect(self._run_from_editor)
        self.run_menu.addAction(self.read_text_action)

    def _restore_geometry(self) -> None:
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray | bytes):
            self.restoreGeometry(geometry)
            return
        screen = self.screen().availableGeometry() if self.screen() is not None else None
        if screen is not None and screen.width() > 0:
            self.resize(int(screen.width() * 0.95), int(screen.height() * 0.92))
        else:
            self.resize(1500, 950)

    def add_file_action(self, action: QAction | None = None) -> QAction:
        """Add an action (None: a separator) to the File menu, above Quit. For Export, Save session..."""
        if action is None:
            return self.file_menu.insertSeparator(self._file_quit_separator)
        self.file_menu.insertAction(self._file_quit_separator, action)
        return action

    def _build_memory_dock(self) -> None:
        """Long-term memory settings: store, add documents, k / lambda / temperature, remember runs."""
        from memviz.ui.memory_controls import MemoryControls

        self.memory_controls = controls = MemoryControls(self.worker)  # its jobs run on the worker
        dock = QDockWidget("Memory settings", self)
        dock.setObjectName("dock_memory_settings")
        dock.setWidget(controls)
        self.addDockWidget(Qt.LeftDockWidgetArea, dock)
        dock.hide()  # opened from View -> Memory settings, or by picking a store
        self.memory_dock = dock
        controls.storeChanged.connect(self._on_memory_changed)
        controls.recallChanged.connect(self._on_recall_changed)
        controls.busyChanged.connect(self.playback.set_busy)
        controls.error.connect(self.message)
        controls.summary.connect(self.message)
        self.playback.run_ended.connect(self._remember_run)
        action = dock.toggleViewAction()
        action.setText("Memory settings")
        self.view_menu.addAction(action)

    def _remember_run(self, _reason: str) -> None:
        self.memory_controls.remember(self.worker.session)

    def _on_recall_changed(self, _recall) -> None:
        self._on_memory_changed(self.memory_controls.store)

    def _on_memory_changed(self, store) -> None:
        """A new store or new recall settings: the worker restarts the run with them (and the
        panels follow the new run: the memory panel comes with its first recalled step)."""
        self.playback.set_memory(store, self.memory_controls.recall)
        self.message(
            "long-term memory off" if store is None else f"recalling from {store.path} (run restarted)"
        )

    def open_memory(self, path: str | Path) -> None:
        """Recall from the store at `path` once the model is loaded (`memviz gui --memory`); a store
        of another model is refused with a clear error."""
        if self.info is not None and self._loading is None:
            self._open_memory_now(str(path))
        else:
            self._memory_after_load = str(path)

    def _open_memory_now(self, path: str) -> None:
        job = self.memory_controls.open_store(path, create=False)
        if job is not None:
            job.failed.connect(lambda reason: self.show_error("Could not open the memory store", reason))

    # == wiring the playback controller ===============================================================
    def _connect_playback(self) -> None:
        p, t = self.playback, self.transport
        p.text = self.editor.text
        p.set_speed(t.tokens_per_second())
        t.reset_action.triggered.connect(self.reset)
        t.back_action.triggered.connect(self.step_back)
        t.forward_action.triggered.connect(self.step_forward)
        t.play_action.triggered.connect(self.set_playing)
        t.speed_changed.connect(p.set_speed)
        self.editor.run_requested.connect(self._run_from_editor)
        self.strip.token_clicked.connect(self.scrub_to)
        p.loading_changed.connect(self._on_loading_changed)
        p.model_loaded.connect(self._on_model_loaded)
        p.load_failed.connect(self._on_load_failed)
        p.trace_changed.connect(self.set_trace)
        p.stepped.connect(self._on_stepped)
        p.playing_changed.connect(t.set_playing)
        p.waiting_changed.connect(t.set_waiting)
        p.run_ended.connect(self._on_run_ended)
        p.actions_changed.connect(self._update_actions)
        p.message.connect(self.message)

    def load_model(self, spec: str, play: bool = False) -> None:
        """Ask the worker to load a model (bundled name, folder or Hugging Face id)."""
        self.playback.load_model(spec, play=play)

    def _on_loading_changed(self, spec: str | None) -> None:
        self.status.show_loading(spec)
        if self.picker is not None:
            self.picker.set_loading(spec)
        if spec is None:
            self._update_status()

    def _on_model_loaded(self, spec: str, _info) -> None:
        if self.worker.session is not None:  # a store of another model no longer fits: memory goes off
            self.memory_controls.set_backend(
                self.worker.session.backend, open_default=self._memory_after_load is None
            )
        if self._memory_after_load is not None:
            path, self._memory_after_load = self._memory_after_load, None
            self._open_memory_now(path)
        if Path(spec).expanduser().is_dir() or ("/" in spec and not Path(spec).exists()):
            remember_model(self.settings, spec)
        if self.picker is not None:
            self.picker.refresh_recent()
            self.picker.accept()
        self.strip.placeholder = "Press Ctrl+Enter to read the text (or Space to play)"
        self.strip.update()
        self.strip.setFocus()

    def _on_load_failed(self, spec: str, reason: str) -> None:
        if self.picker is not None:
            self.picker.show_failure(spec, reason)
        self.show_error(f"Could not load {spec}", reason)

    def show_error(self, title: str, reason: str) -> None:
        """A failure: a line in the status bar and a window-modal, non-blocking box."""
        self.message(f"{title}: {reason}")
        self.error_box = error_box(self, title, reason)

    def _on_stepped(self, index: int, rate: float) -> None:
        """A new step: redraws for new steps are paced by the cost of a frame."""
        self._follow_panels()
        self.pacer.from_model = True
        try:
            if not self.playback.follow(index):
                self.schedule_redraw()
        finally:
            self.pacer.from_model = False

    def _on_run_ended(self, _reason: str) -> None:
        self.schedule_redraw()

    # == the trace and the panels ========================================================================
    def set_trace(self, trace: Trace | None) -> None:
        """Show a trace (a new run, a reset or a saved file): docks for the panels that support it."""
        self.docks_part.rebuild(trace)
        for panel in self.panels.values():
            self.docks_part.safe(panel, "set_trace", trace)
        self.strip.set_trace(trace)
        self.view_bar.configure(trace)
        self.schedule_redraw()

    def _follow_panels(self) -> None:
        """The run gained (or lost) columns, e.g. its first recalled memories: the docks follow."""
        if self.docks_part.follow(self.trace):
            for panel in self.panels.values():
                self.docks_part.safe(panel, "set_trace", self.trace)
            self.view_bar.configure(self.trace)
            self.schedule_redraw()

    def open_trace(self, source: str | Path | Trace) -> None:
        """Show a saved trace without a model: scrub and replay it, nothing is recomputed. The editor
        shows the trace's text (what was read), not the text typed before."""
        trace = source if isinstance(source, Trace) else Trace.load(source)
        self.playback.open_trace(trace)
        self.editor.setPlainText(trace.text())  # from the tokens' bytes: split characters whole
        if not isinstance(source, Trace):
            self.message(f"opened {source}: {len(trace)} tokens")
        self.trace_opened.emit(trace)

    def reset_layout(self) -> None:
        self.docks_part.reset_layout()
        self.schedule_redraw()

    def panel(self, name: str) -> Panel | None:
        return self.panels.get(name)

    # == drawing ==========================================================================================
    def schedule_redraw(self) -> None:
        """Ask for a redraw; all requests until it happens make one redraw (see pacing)."""
        self.pacer.schedule()

    def redraw(self) -> None:
        """Draw everything from the trace at the current view state (UI thread only)."""
        self.pacer.frame_started()
        state = self.view.state
        self.render_count += 1
        window_shown = self.isVisible()
        for name, panel in self.panels.items():
            dock = self.docks[name]
            if dock.isHidden() or (window_shown and not dock.isVisible()):
                continue  # closed, or a hidden tab: drawn when it shows again
            self.docks_part.safe(panel, "render", state)
        self.strip_view.render(state)
        self._update_status()

    def _on_view_changed(self, state: ViewState) -> None:
        self.view_bar.sync(state)
        self.schedule_redraw()

    def _update_status(self) -> None:
        p = self.playback
        self.status.update(p.trace, p.info, self.view.state.cursor, p.rate, p.loading)

    def message(self, text: str) -> None:
        """Show a line in the status bar (warnings, why a run stopped, failures)."""
        self.status.message(text)

    # == transport ========================================================================================
    def _update_actions(self) -> None:
        enabled = self.playback.enabled()
        t = self.transport
        for name, action in (
            ("reset", t.reset_action),
            ("back", t.back_action),
            ("forward", t.forward_action),
            ("play", t.play_action),
            ("generate", self.generate_bar.generate_action),
        ):
            action.setEnabled(enabled[name])

    def step_forward(self) -> None:
        self.playback.step_forward()

    def step_back(self) -> None:
        self.playback.step_back()

    def scrub_to(self, index: int) -> None:
        self.playback.scrub_to(index)

    def set_playing(self, playing: bool) -> None:
        self.playback.set_playing(playing)

    def toggle_play(self) -> None:
        self.playback.toggle_play()

    def reset(self) -> None:
        self.playback.reset()

    def generate(self) -> None:
        """Generate N tokens after what has been read, with the sampling settings of the bar."""
        if self.info is None:
            self.message("load a model to generate")
            return
        try:
            sampling = self.generate_bar.sampling()
        except MemvizError as exc:
            self.message(str(exc))
            return
        self.playback.generate(self.generate_bar.tokens(), sampling)

    def _run_from_editor(self) -> None:
        """Ctrl+Enter in the editor: read its text, and hand the keys to the player."""
        self.give_keys_to_player()
        self.playback.play_text()

    def give_keys_to_player(self) -> None:
        """Focus leaves the editor: Space plays, Left / Right step, Home resets (Esc, Ctrl+Enter)."""
        self.strip.setFocus()

    def toggle_editor_focus(self) -> None:
        if self.editor.hasFocus():
            self.give_keys_to_player()
        else:
            self.editor.setFocus()

    def _on_focus_changed(self, _old, new) -> None:
        self.status.show_keys(editing=new is self.editor)

    # == theme, files, picker ==============================================================================
    def set_theme(self, name: str) -> None:
        if name not in THEMES:
            raise MemvizError(f"unknown theme {name!r} (themes: {', '.join(THEMES)})")
        self.view.update(theme=name)
        self.settings.setValue("view/theme", name)
        self.apply_theme()

    def apply_theme(self) -> None:
        state = self.view.state
        self.setStyleSheet(style_sheet(state.theme))
        for name, action in self.theme_actions.items():
            action.setChecked(name == state.theme)
        for panel in self.panels.values():
            self.docks_part.safe(panel, "apply_theme", state)
        self.schedule_redraw()

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

    def open_model_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a model folder", str(Path.home()))
        if folder:
            self.choose_model(folder)

    def choose_model(self, spec: str) -> None:
        """The user chose another model: an unsaved run is kept or dropped as they say."""
        if self.confirm_discard("loading another model"):
            self.load_model(spec)

    def open_trace_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a trace", str(Path.home()), "memviz traces (*.memviz)"
        )
        if path:
            try:
                self.open_trace(path)
            except MemvizError as exc:
                self.show_error("Could not open the trace", str(exc))

    def show_model_picker(self) -> ModelPicker:
        if self.picker is None:
            self.picker = ModelPicker(self.settings, self)
            self.picker.chosen.connect(self.choose_model)
        self.picker.refresh_recent()
        self.picker.set_loading(self._loading)
        self.picker.show()
        self.picker.raise_()
        return self.picker

    # == closing ==========================================================================================
    def closeEvent(self, event) -> None:
        if not self._closed and not self.confirm_discard("quitting"):
            event.ignore()
            return
        self.shutdown()
        super().closeEvent(event)

    def run_is_unsaved(self) -> bool:
        """A live run with steps that was not saved (a saved trace opened from a file is saved)."""
        trace = self.trace
        return (
            self.info is not None
            and trace is not None
            and len(trace) > 0
            and not self.export_actions.is_saved(trace)
        )

    def confirm_discard(self, doing: str) -> bool:
        """Ask Save / Discard / Cancel before an unsaved run is lost; True when it may go."""
        if not (self.ask_before_discarding and self.run_is_unsaved()):
            return True
        self.set_playing(False)
        buttons = QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel
        answer = QMessageBox.question(
            self,
            "memviz",
            f"The run has {len(self.trace)} steps that were not saved. Save the session before {doing}?",
            buttons,
            QMessageBox.Save,
        )
        if answer == QMessageBox.Save:
            return self.export_actions.save_session_dialog()
        return answer == QMessageBox.Discard

    def shutdown(self) -> None:
        """Save the layout, stop the jobs and the worker. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.playback.stop()
        self.pacer.stop()
        if self.docks:
            self.docks_part.save_layout()
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.sync()
        self.export_actions.shutdown()
        self.memory_controls.cancel_add()
        self.memory_controls.wait()
        self._worker_thread.stop()
        from PySide6.QtWidgets import QApplication

        QApplication.instance().focusChanged.disconnect(self._on_focus_changed)
