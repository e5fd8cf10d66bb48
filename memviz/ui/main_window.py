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

Groups of the window's own slots live in mixins: window_memory (the memory dock and its wiring),
window_model (loading and switching models, the unsaved-run question), window_files (texts and
saved traces opened), window_transport (step / play / generate and the keys).

The window only draws: it redraws from the Trace when the worker reports a step.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMessageBox, QSplitter, QToolBar, QWidget

from memviz.core.trace import Trace
from memviz.core.view import THEMES, ViewState
from memviz.errors import MemvizError
from memviz.panels.base import Panel
from memviz.panels.view_model import ViewModel
from memviz.ui.actions import TOOLBAR, build_actions
from memviz.ui.colour_scale_menu import add_colour_scale_menu
from memviz.ui.docks import LAYOUT_VERSION, Docks
from memviz.ui.experiment_wiring import ExperimentsWiring
from memviz.ui.model_picker import ModelPicker
from memviz.ui.pacing import MAX_REDRAW_INTERVAL_MS, REDRAW_INTERVAL_MS, RedrawPacer
from memviz.ui.playback import Playback
from memviz.ui.resources import style_sheet
from memviz.ui.status import StatusLine, error_box
from memviz.ui.text_editor import DEFAULT_TEXT, TextEditor
from memviz.ui.token_strip import TokenStripView
from memviz.ui.transport import GenerateBar, Transport
from memviz.ui.view_bar import ViewBar
from memviz.ui.window_files import TraceFiles
from memviz.ui.window_memory import MemoryWiring
from memviz.ui.window_model import ModelSwitching
from memviz.ui.window_transport import TransportSlots
from memviz.ui.worker import WorkerThread

# the names the window module has always had
__all__ = ["LAYOUT_VERSION", "MAX_REDRAW_INTERVAL_MS", "REDRAW_INTERVAL_MS", "MainWindow", "style_sheet"]

MIN_WIDTH, MIN_HEIGHT = 960, 600  # the toolbars in two rows and two docks side by side still fit


class MainWindow(QMainWindow, MemoryWiring, ModelSwitching, TraceFiles, TransportSlots, ExperimentsWiring):
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
        self.docks_part.variant = self.compare_actions.variant  # B - A: variants and placeholders
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
        # right-click a head, a unit or a token to intervene there (Run -> Intervene)
        self.export_actions.add_menu_hook(self.intervene_actions.menu_entries)
        self.strip.menu_requested.connect(self.intervene_actions.show_strip_menu)
        self._build_memory_dock()
        self.add_file_action(self.compare_actions.compare_action)
        self.add_file_action(self.compare_actions.clear_action)

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
        from memviz.ui.diff_strip import DiffStripView, under

        self.diff_strip = DiffStripView(self.view)  # B - A under the tokens while two runs are compared
        splitter.addWidget(under(self.strip_view, self.diff_strip))
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
        from memviz.ui.compare_actions import CompareActions

        self.compare_actions = CompareActions(self)  # File -> Compare with..., View -> A / B / B - A
        self.view_menu.addSeparator()
        for action in self.compare_actions.mode_actions.values():
            self.view_menu.addAction(action)
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
        from memviz.ui.intervene_actions import InterveneActions

        self.run_menu.addSeparator()
        self.intervene_actions = InterveneActions(self, self.playback)  # Intervene... / Clear
        self.run_menu.addAction(self.intervene_actions.intervene_action)
        self.run_menu.addAction(self.intervene_actions.clear_action)
        from memviz.ui.slide_action import SlideAction

        self.slide_action = SlideAction(self, self.playback)  # read past the window (--slide)
        self.run_menu.addAction(self.slide_action.action)
        from memviz.ui.match_actions import MatchActions

        self.match_actions = MatchActions(self)  # Run -> Find similar... and the Pattern matches panel
        self.run_menu.addAction(self.match_actions.find_action)
        self.run_menu.addSeparator()
        self.run_menu.addAction(self.window_actions["experiments"])  # the Experiments window

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
        self.diff_strip.strip.token_clicked.connect(self.scrub_to)
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
        self.intervene_actions.attach(trace)  # an intervened run carries its baseline (compare panel)
        self.compare_actions.attach(trace)  # ... or the run picked with Compare with...
        self.docks_part.rebuild(trace)
        for name, panel in self.panels.items():  # B, A or B - A (View -> Show ...)
            self.docks_part.safe(panel, "set_trace", self.compare_actions.fed(name, trace))
        self.strip.set_trace(trace)
        self.view_bar.configure(trace)
        self.schedule_redraw()

    def _follow_panels(self) -> None:
        """The run gained (or lost) columns, e.g. its first recalled memories: the docks follow."""
        if self.docks_part.follow(self.trace):
            for name, panel in self.panels.items():
                self.docks_part.safe(panel, "set_trace", self.compare_actions.fed(name, self.trace))
            self.view_bar.configure(self.trace)
            self.schedule_redraw()

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
        self.compare_actions.follow()  # the run left the tokens compared: back to the plain view
        self.diff_strip.render(state)
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

    # == theme ==============================================================================================
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

    # == closing ==========================================================================================
    def closeEvent(self, event) -> None:
        if not self._closed and not self.confirm_discard("quitting"):
            event.ignore()
            return
        self.shutdown()
        super().closeEvent(event)

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
        self.compare_actions.shutdown()
        self.match_actions.shutdown()
        self.shutdown_experiments()
        self.memory_controls.cancel_add()
        self.memory_controls.wait()
        self._worker_thread.stop()
        from PySide6.QtWidgets import QApplication

        QApplication.instance().focusChanged.disconnect(self._on_focus_changed)
