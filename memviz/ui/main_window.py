"""The main window: the text, the token strip, dockable panels, menus, toolbars and the status bar.

The window only draws. The model lives in the worker (memviz.ui.worker); the window asks it for
steps and redraws from the Trace when it signals. Redraws are coalesced on a 60 Hz timer, so a fast
model never floods the event loop. Scrubbing (step back, a click on a token) moves the cursor only.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSpinBox,
    QSplitter,
    QToolBar,
    QWidget,
)

from memviz.core.trace import Trace
from memviz.core.view import THEMES, ViewState
from memviz.errors import MemvizError
from memviz.panels import registry as panel_registry
from memviz.panels.base import Panel
from memviz.panels.live_label import LiveLabel
from memviz.panels.view_model import ViewModel
from memviz.ui.model_picker import ModelPicker, remember_model
from memviz.ui.text_editor import DEFAULT_TEXT, TextEditor
from memviz.ui.token_strip import SIGNALS, TokenStripView, available_signals
from memviz.ui.transport import GenerateBar, Transport
from memviz.ui.worker import WorkerThread

log = logging.getLogger(__name__)

REDRAW_INTERVAL_MS = 16  # at most ~60 redraws a second, however fast the model steps
MAX_REDRAW_INTERVAL_MS = 250  # however slow a frame, a running model is redrawn at least 4 times a second
LAYOUT_VERSION = 1


def resource_path(name: str) -> Path | None:
    """A file from resources/: inside the installed package, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent.parent  # memviz/
    for root in (here / "resources", here.parent / "resources"):
        candidate = root / name
        if candidate.is_file():
            return candidate
    return None


def style_sheet(theme: str) -> str:
    path = resource_path(f"style_{theme}.qss")
    return path.read_text(encoding="utf-8") if path else ""


class MainWindow(QMainWindow):
    panels_built = Signal()  # after the docks were rebuilt for a trace: `panels` may hold new panels

    def __init__(self, settings: QSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("memvizMainWindow")
        self.setWindowTitle("memviz")
        self.settings = settings or QSettings("memviz", "memviz")
        theme = str(self.settings.value("view/theme", "dark"))
        self.view = ViewModel(ViewState(theme=theme if theme in THEMES else "dark"))
        self.trace: Trace | None = None
        self.info = None  # ModelInfo of the loaded model; None when only a saved trace is shown
        self.model_spec: str | None = None
        self.docks: dict[str, QDockWidget] = {}
        self.panels: dict[str, Panel] = {}
        self._layout_arch: str | None = None
        self.messages: list[str] = []  # everything shown in the status bar, for tests and the log
        self.render_count = 0
        self.runs_finished = 0
        self._from_model = False
        self._frame_cost_ms = 0.0
        self._last_frame_start = 0.0  # worker runs (play, generate) that have ended
        self.error_box: QMessageBox | None = None
        self.picker: ModelPicker | None = None
        self._fed_text: str | None = None
        self._running = ""  # what the worker is doing: "play", "generate" or ""
        self._loading: str | None = None
        self._rate = 0.0
        self._known_steps = 0  # steps the worker has reported (the trace may already hold more)
        self._play_after_load = False
        self._closed = False
        self._spin_actions: dict[str, tuple[QAction, QAction]] = {}
        self._panel_failures: set[tuple[str, str]] = set()
        self._memory_store = None  # the open long-term memory store, or None

        self._worker_thread = WorkerThread(self)
        self.worker = self._worker_thread.worker
        self._connect_worker()

        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(REDRAW_INTERVAL_MS)
        self._redraw_timer.timeout.connect(self.redraw)
        self._replay_timer = QTimer(self)  # plays back an existing trace by moving the cursor
        self._replay_timer.timeout.connect(self._replay_tick)

        self._build_central()
        self._build_toolbars()
        self._build_menus()
        self._build_status_bar()
        self.view.changed.connect(self._on_view_changed)
        self.apply_theme()
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray | bytes):
            self.restoreGeometry(geometry)
        else:
            screen = self.screen().availableGeometry() if self.screen() is not None else None
            if screen is not None and screen.width() > 0:
                self.resize(int(screen.width() * 0.95), int(screen.height() * 0.92))
            else:
                self.resize(1500, 950)
        self._update_actions()
        self._update_status()
        from memviz.ui.export_actions import install_export_actions

        install_export_actions(self)  # File -> Export / Save session, right-click Export... on panels
        self._build_memory_dock()

    # == building =====================================================================================
    def _build_central(self) -> None:
        self.editor = TextEditor()
        self.editor.setPlainText(DEFAULT_TEXT)
        self.editor.file_loaded.connect(self._on_text_file_loaded)
        self.editor.file_failed.connect(lambda reason: self._show_error("Could not open the text", reason))
        self.editor.run_requested.connect(self._run_from_editor)
        self.editor.leave_requested.connect(lambda: self.strip.setFocus())
        self.strip_view = TokenStripView(self.view)
        self.strip = self.strip_view.strip
        self.strip.token_clicked.connect(self.scrub_to)
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
        self.open_model_action = QAction("Model...", self)
        self.open_model_action.setShortcut(QKeySequence("Ctrl+M"))
        self.open_model_action.setToolTip(
            "Choose a model: bundled, recent, a folder or a Hugging Face id (Ctrl+M)"
        )
        self.open_model_action.triggered.connect(self.show_model_picker)
        self.open_text_action = QAction("Open text...", self)
        self.open_text_action.setShortcut(QKeySequence.Open)
        self.open_text_action.triggered.connect(self.open_text_dialog)
        self.main_toolbar.addAction(self.open_model_action)
        self.main_toolbar.addAction(self.open_text_action)
        self.addToolBar(self.main_toolbar)

        self.transport = Transport(self)
        self.transport.reset_action.triggered.connect(self.reset)
        self.transport.back_action.triggered.connect(self.step_back)
        self.transport.forward_action.triggered.connect(self.step_forward)
        self.transport.play_action.triggered.connect(self.set_playing)
        self.transport.speed_changed.connect(self._on_speed_changed)
        self.addToolBar(self.transport)

        self.generate_bar = GenerateBar(self)
        self.generate_bar.generate_action.triggered.connect(self.generate)
        self.addToolBar(self.generate_bar)

        self.addToolBarBreak()
        self.view_bar = QToolBar("View", self)
        self.view_bar.setObjectName("viewToolBar")
        self.view_bar.addWidget(QLabel(" Tint "))
        self.signal_combo = QComboBox()
        self.signal_combo.setToolTip("What tints the tokens")
        self.signal_combo.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.signal_combo.currentIndexChanged.connect(self._on_signal_combo)
        self.view_bar.addWidget(self.signal_combo)
        self.layer_spin = self._spin("Layer", "layer", "The layer shown by the panels and the strip")
        self.head_spin = self._spin("Head", "head", "The attention head (GPT-2)")
        self.unit_spin = self._spin(
            "Unit", "unit", "The selected unit (LSTM): tints the tokens, highlighted in panels"
        )
        self.addToolBar(self.view_bar)

    def _spin(self, label: str, field: str, tip: str) -> QSpinBox:
        label_action = self.view_bar.addWidget(QLabel(f"  {label} "))
        spin = QSpinBox()
        spin.setObjectName(f"{field}Spin")
        spin.setToolTip(tip)
        spin.setRange(0, 0)
        spin.valueChanged.connect(lambda value: self.view.update(**{field: int(value)}))
        spin_action = self.view_bar.addWidget(spin)
        self._spin_actions[field] = (label_action, spin_action)
        return spin

    def _build_menus(self) -> None:
        bar = self.menuBar()
        self.file_menu = bar.addMenu("&File")
        self.file_menu.addAction(self.open_text_action)
        self.file_menu.addAction(self.open_model_action)
        self.open_folder_action = QAction("Open model folder...", self)
        self.open_folder_action.setShortcut(QKeySequence("Ctrl+Shift+O"))
        self.open_folder_action.triggered.connect(self.open_model_folder_dialog)
        self.file_menu.addAction(self.open_folder_action)
        self.open_trace_action = QAction("Open trace...", self)
        self.open_trace_action.triggered.connect(self.open_trace_dialog)
        self.file_menu.addAction(self.open_trace_action)
        self._file_extra_separator = self.file_menu.addSeparator()  # File actions added later go here
        self._file_quit_separator = self.file_menu.addSeparator()
        self.quit_action = QAction("Quit", self)
        self.quit_action.setShortcut(QKeySequence.Quit)
        self.quit_action.triggered.connect(self.close)
        self.file_menu.addAction(self.quit_action)

        self.view_menu = bar.addMenu("&View")
        self.panels_menu = self.view_menu.addMenu("Panels")
        self.reset_layout_action = QAction("Reset layout", self)
        self.reset_layout_action.triggered.connect(self.reset_layout)
        self.view_menu.addAction(self.reset_layout_action)
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
        self.view_menu.addSeparator()
        for toolbar in (self.main_toolbar, self.transport, self.generate_bar, self.view_bar):
            self.view_menu.addAction(toolbar.toggleViewAction())
        self._rebuild_panels_menu()

        self.run_menu = bar.addMenu("&Run")
        for action in (
            self.transport.play_action,
            self.transport.forward_action,
            self.transport.back_action,
            self.transport.reset_action,
        ):
            self.run_menu.addAction(action)
        self.run_menu.addSeparator()
        self.run_menu.addAction(self.generate_bar.generate_action)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(120)
        self.busy.setTextVisible(False)
        self.busy.hide()
        self.model_label = QLabel("no model")  # changes only when a model or trace opens
        self.step_label = LiveLabel("")
        self.rate_label = LiveLabel("")
        self.context_label = LiveLabel("")
        for widget in (self.busy, self.model_label, self.step_label, self.rate_label, self.context_label):
            bar.addPermanentWidget(widget)

    def add_file_action(self, action: QAction | None = None) -> QAction:
        """Add an action (None: a separator) to the File menu, above Quit. For Export, Save session..."""
        if action is None:
            return self.file_menu.insertSeparator(self._file_quit_separator)
        self.file_menu.insertAction(self._file_quit_separator, action)
        return action

    def _build_memory_dock(self) -> None:
        """Long-term memory settings: store, add documents, k / lambda / temperature, remember runs."""
        from memviz.ui.memory_controls import MemoryControls

        self.memory_controls = controls = MemoryControls()
        dock = QDockWidget("Memory settings", self)
        dock.setObjectName("dock_memory_settings")
        dock.setWidget(controls)
        self.addDockWidget(Qt.LeftDockWidgetArea, dock)
        dock.hide()  # opened from View -> Memory settings, or by picking a store
        self.memory_dock = dock
        controls.storeChanged.connect(self._on_memory_changed)
        controls.recallChanged.connect(lambda _recall: self._on_memory_changed(controls.store))
        controls.busyChanged.connect(lambda _busy: self._update_actions())
        controls.error.connect(self.message)
        controls.addFinished.connect(lambda result: self.message(f"memory: {result}"))
        self.worker.stopped.connect(lambda _reason: controls.remember(self.worker.session))
        action = dock.toggleViewAction()
        action.setText("Memory settings")
        self.view_menu.addAction(action)

    def _on_memory_changed(self, store) -> None:
        """A new store or new recall settings: the worker restarts the run with them."""
        panel = self.panels.get("memory")
        if panel is not None:
            panel.set_store(store)
        self._memory_store = store
        self._fed_text = None
        self.worker.memory_requested.emit(store, self.memory_controls.recall)
        self.message(
            "long-term memory off" if store is None else f"recalling from {store.path} (run restarted)"
        )

    # == worker ======================================================================================
    def _connect_worker(self) -> None:
        w = self.worker
        w.loading.connect(self._on_loading)
        w.loaded.connect(self._on_loaded)
        w.load_failed.connect(self._on_load_failed)
        w.trace_reset.connect(self._on_trace_reset)
        w.stepped.connect(self._on_stepped)
        w.warned.connect(self.message)
        w.stopped.connect(self._on_stopped)
        w.running_changed.connect(self._on_running_changed)
        w.failed.connect(self.message)

    def load_model(self, spec: str, play: bool = False) -> None:
        """Ask the worker to load a model (bundled name, folder or Hugging Face id)."""
        self._replay_timer.stop()
        self._loading = spec
        self._play_after_load = play
        self.busy.show()
        self.model_label.setText(f"loading {spec} ...")
        if self.picker is not None:
            self.picker.set_loading(spec)
        self.worker.load_requested.emit(spec)

    def _on_loading(self, spec: str) -> None:
        self.message(f"loading {spec} ...")

    def _on_loaded(self, trace: Trace, info) -> None:
        spec = self._loading or info.name
        self._loading = None
        self.busy.hide()
        self.info = info
        if self.worker.session is not None:  # a store of another model no longer fits: memory goes off
            self.memory_controls.set_backend(self.worker.session.backend)
        self.model_spec = spec
        self._fed_text = None
        self._rate = 0.0
        if Path(spec).expanduser().is_dir() or ("/" in spec and not Path(spec).exists()):
            remember_model(self.settings, spec)
        if self.picker is not None:
            self.picker.set_loading(None)
            self.picker.refresh_recent()
            self.picker.accept()
        self.set_trace(trace)
        self.message(f"loaded {info.name} ({info.architecture.upper()}, {info.num_layers} layers)")
        self.strip.setFocus()
        if self._play_after_load:
            self._play_after_load = False
            self.set_playing(True)

    def _on_load_failed(self, spec: str, reason: str) -> None:
        self._loading = None
        self.busy.hide()
        self._play_after_load = False
        self._update_status()
        if self.picker is not None:
            self.picker.show_failure(spec, reason)
        self._show_error(f"Could not load {spec}", reason)

    def _show_error(self, title: str, reason: str) -> None:
        self.message(f"{title}: {reason}")
        box = QMessageBox(QMessageBox.Critical, "memviz", title, QMessageBox.Ok, self)
        box.setInformativeText(reason)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.open()  # window-modal and non-blocking
        self.error_box = box

    def _on_trace_reset(self, trace: Trace) -> None:
        self.set_trace(trace)

    def _on_stepped(self, index: int, rate: float) -> None:
        self._rate = rate
        self._known_steps = max(self._known_steps, index + 1)
        self._from_model = True  # redraws for new steps are paced by the cost of a frame
        try:
            if self.view.state.follow and self.view.state.cursor != index:
                self.view.update(cursor=index)  # schedules a redraw
            else:
                self.schedule_redraw()
        finally:
            self._from_model = False

    def _on_running_changed(self, mode: str) -> None:
        self._running = mode
        if not mode:
            self.runs_finished += 1
        self.transport.set_playing(bool(mode) or self._replay_timer.isActive())
        self._update_actions()

    def _on_stopped(self, reason: str) -> None:
        self.transport.set_playing(self._replay_timer.isActive() or bool(self._running))
        if reason and reason != "paused":
            self.message(reason)
        self.schedule_redraw()

    def _on_speed_changed(self, speed: float) -> None:
        self.worker.speed_requested.emit(speed)
        if self._replay_timer.isActive():
            self._replay_timer.setInterval(self._replay_interval())

    # == the trace and the panels ========================================================================
    def set_trace(self, trace: Trace | None) -> None:
        """Show a trace (a new run, a reset or a saved file): docks for the panels that support it."""
        self.trace = trace
        self._known_steps = 0 if trace is None else len(trace)
        self._rebuild_docks(trace)
        for panel in self.panels.values():
            self._safe(panel, "set_trace", trace)
        self.strip.set_trace(trace)
        self._configure_view_controls(trace)
        n = 0 if trace is None else len(trace)
        self.view.update(cursor=n - 1, follow=True)
        self._update_actions()
        self.schedule_redraw()

    def open_trace(self, source: str | Path | Trace) -> None:
        """Show a saved trace without a model: scrub and replay it, nothing is recomputed."""
        trace = source if isinstance(source, Trace) else Trace.load(source)
        self.set_playing(False)
        self.info = None
        self.model_spec = None
        self.set_trace(trace)
        if not isinstance(source, Trace):
            self.message(f"opened {source}: {len(trace)} tokens")

    def _configure_view_controls(self, trace: Trace | None) -> None:
        model = trace.model if trace is not None else {}
        arch = trace.architecture if trace is not None else ""
        layers = max(int(model.get("num_layers") or 1), 1)
        heads = max(int(model.get("num_heads") or 1), 1)
        units = max(int(model.get("hidden_size") or 1), 1)
        state = self.view.state
        changes = {
            "layer": min(state.layer, layers - 1),
            "head": min(state.head, heads - 1),
            "unit": min(state.unit, units - 1),
        }
        signals = available_signals(trace)
        if trace is not None and len(signals) > 1 and state.signal not in signals:
            changes["signal"] = (
                "attention" if "attention" in signals else "unit" if "unit" in signals else signals[1]
            )
        self.view.update(**changes)
        for spin, top in ((self.layer_spin, layers), (self.head_spin, heads), (self.unit_spin, units)):
            blocked = spin.blockSignals(True)
            spin.setRange(0, top - 1)
            spin.blockSignals(blocked)
        for action in self._spin_actions["head"]:
            action.setVisible(arch == "gpt2")
        for action in self._spin_actions["unit"]:
            action.setVisible(arch == "lstm")
        blocked = self.signal_combo.blockSignals(True)
        self.signal_combo.clear()
        for name in signals:
            self.signal_combo.addItem(SIGNALS[name][0], name)
        self.signal_combo.blockSignals(blocked)
        self._sync_view_controls(self.view.state)

    def _sync_view_controls(self, state: ViewState) -> None:
        for spin, value in (
            (self.layer_spin, state.layer),
            (self.head_spin, state.head),
            (self.unit_spin, state.unit),
        ):
            if spin.value() != value:
                blocked = spin.blockSignals(True)
                spin.setValue(value)
                spin.blockSignals(blocked)
        index = self.signal_combo.findData(state.signal)
        if index >= 0 and index != self.signal_combo.currentIndex():
            blocked = self.signal_combo.blockSignals(True)
            self.signal_combo.setCurrentIndex(index)
            self.signal_combo.blockSignals(blocked)

    def _on_signal_combo(self, index: int) -> None:
        name = self.signal_combo.itemData(index)
        if name:
            self.view.update(signal=str(name))

    def _rebuild_docks(self, trace: Trace | None) -> None:
        arch = trace.architecture if trace is not None else None
        wanted = [
            cls for cls in panel_registry.panel_classes() if trace is not None and self._supports(cls, trace)
        ]
        wanted_names = [cls.name for cls in wanted]
        if self._layout_arch is not None and self.docks:
            self._save_layout()
        for name in list(self.docks):
            dock = self.docks[name]
            if name not in wanted_names or type(self.panels[name]) not in wanted:
                self.removeDockWidget(dock)
                dock.deleteLater()
                del self.docks[name]
                del self.panels[name]
        created = []
        for cls in wanted:
            if cls.name in self.docks:
                continue
            try:
                panel = cls(self.view)
            except Exception:
                log.exception("panel %s failed to build", cls.name)
                self.message(f"panel {cls.title} could not be built (see the log)")
                continue
            dock = QDockWidget(cls.title, self)
            dock.setObjectName(f"dock-{cls.name}")
            dock.setWidget(panel)
            dock.setFeatures(
                QDockWidget.DockWidgetMovable
                | QDockWidget.DockWidgetClosable
                | QDockWidget.DockWidgetFloatable
            )
            dock.visibilityChanged.connect(lambda visible: visible and self.schedule_redraw())
            self.docks[cls.name] = dock
            self.panels[cls.name] = panel
            if hasattr(panel, "set_store"):
                panel.set_store(self._memory_store)
            self._safe(panel, "apply_theme", self.view.state)
            created.append(dock)
        if created or arch != self._layout_arch:
            self._default_layout([self.docks[n] for n in wanted_names if n in self.docks])
            self._restore_layout(arch)
        self._layout_arch = arch
        self._rebuild_panels_menu()
        if created:
            self.panels_built.emit()

    @staticmethod
    def _supports(cls: type[Panel], trace: Trace) -> bool:
        try:
            return bool(cls.supports(trace))
        except Exception:
            log.exception("panel %s: supports() failed", getattr(cls, "name", cls))
            return False

    def _default_layout(self, docks: list[QDockWidget]) -> None:
        """The first two panels (the main pictures: gates and state, or attention and heads) in a
        full-height right column; the rest in a row under the text and the token strip."""
        if not docks:
            return
        self.setCorner(Qt.BottomRightCorner, Qt.RightDockWidgetArea)
        self.setCorner(Qt.TopRightCorner, Qt.RightDockWidgetArea)
        right, bottom = docks[:2], docks[2:]
        for dock in right:
            self.addDockWidget(Qt.RightDockWidgetArea, dock, Qt.Vertical)
            dock.show()
        for dock in bottom[:2]:
            self.addDockWidget(Qt.BottomDockWidgetArea, dock, Qt.Horizontal)
            dock.show()
        for dock in bottom[2:]:  # a third panel (the memory) shares the last place, as a tab in front
            self.tabifyDockWidget(bottom[1], dock)
            dock.show()
            dock.raise_()
        bottom = bottom[:2]
        width, height = self.width(), self.height()
        self.resizeDocks(right, [int(width * 0.55)] * len(right), Qt.Horizontal)
        if bottom:
            self.resizeDocks(bottom, [int(height * 0.45)] * len(bottom), Qt.Vertical)

    def reset_layout(self) -> None:
        docks = list(self.docks.values())
        for dock in docks:
            dock.setFloating(False)
            self.removeDockWidget(dock)
        self._default_layout(docks)
        for dock in docks:
            dock.show()
        self.schedule_redraw()

    def _layout_key(self, arch: str | None) -> str:
        return f"layout/v{LAYOUT_VERSION}/{arch or 'none'}"

    def _save_layout(self) -> None:
        self.settings.setValue(self._layout_key(self._layout_arch), self.saveState(LAYOUT_VERSION))

    def _restore_layout(self, arch: str | None) -> bool:
        state = self.settings.value(self._layout_key(arch))
        if isinstance(state, QByteArray | bytes) and state:
            return bool(self.restoreState(state, LAYOUT_VERSION))
        return False

    def _rebuild_panels_menu(self) -> None:
        self.panels_menu.clear()
        if not self.docks:
            empty = self.panels_menu.addAction("(no panels for this model)")
            empty.setEnabled(False)
            return
        for dock in self.docks.values():
            self.panels_menu.addAction(dock.toggleViewAction())

    def panel(self, name: str) -> Panel | None:
        return self.panels.get(name)

    # == drawing ==========================================================================================
    def schedule_redraw(self) -> None:
        """Ask for a redraw; all requests until it happens make one redraw.

        A user's action (a scrub, a click) is drawn within one 60 Hz frame. New steps from a running
        model wait at least as long as the last frame took to draw (render + paint), so drawing takes
        at most about half of the UI thread's time however fast the model runs and however heavy the
        panels are: the window keeps answering.
        """
        if self._from_model:
            elapsed_ms = 1000 * (time.perf_counter() - self._last_frame_start)
            period = min(MAX_REDRAW_INTERVAL_MS, 2 * self._frame_cost_ms)  # draw at most half the time
            delay = max(REDRAW_INTERVAL_MS, int(period - elapsed_ms))
            if not self._redraw_timer.isActive():
                self._redraw_timer.start(delay)
        elif not self._redraw_timer.isActive() or self._redraw_timer.remainingTime() > REDRAW_INTERVAL_MS:
            self._redraw_timer.start(REDRAW_INTERVAL_MS)

    def _frame_painted(self) -> None:
        """Runs after the paint events a redraw posted: measures what the frame cost."""
        cost = 1000 * (time.perf_counter() - self._last_frame_start)
        self._frame_cost_ms = 0.5 * self._frame_cost_ms + 0.5 * cost

    def redraw(self) -> None:
        """Draw everything from the trace at the current view state (UI thread only)."""
        self._redraw_timer.stop()
        self._last_frame_start = time.perf_counter()
        QTimer.singleShot(0, self, self._frame_painted)
        state = self.view.state
        self.render_count += 1
        window_shown = self.isVisible()
        for name, panel in self.panels.items():
            dock = self.docks[name]
            if dock.isHidden() or (window_shown and not dock.isVisible()):
                continue  # closed, or a hidden tab: drawn when it shows again
            self._safe(panel, "render", state)
        self.strip_view.render(state)
        self._update_status()

    def _safe(self, panel: Panel, method: str, *args) -> None:
        """Call a panel; a failing panel is reported once and never breaks the window."""
        try:
            getattr(panel, method)(*args)
        except Exception:
            key = (panel.name, method)
            if key not in self._panel_failures:
                self._panel_failures.add(key)
                log.exception("panel %s: %s failed", panel.name, method)
                self.message(f"panel {panel.title}: {method} failed (see the log)")

    def _on_view_changed(self, state: ViewState) -> None:
        self._sync_view_controls(state)
        self.schedule_redraw()

    def _update_status(self) -> None:
        trace = self.trace
        T = 0 if trace is None else len(trace)
        if self._loading:
            pass
        elif self.info is not None:
            self.model_label.setText(f"{self.info.name} ({self.info.architecture.upper()})")
        elif trace is not None:
            self.model_label.setText(f"{trace.model.get('name', '?')} (saved trace)")
        else:
            self.model_label.setText("no model")
        cursor = self.view.state.cursor
        self.step_label.setText(f"step {cursor + 1} of {T}" if T else "step 0 of 0")
        self.rate_label.setText(f"{self._rate:.1f} tok/s" if self._rate else "- tok/s")
        if self.info is not None:
            from memviz.core.session import MAX_TOKENS

            size = self.info.context_size
            if size:
                self.context_label.setText(f"context {T} / {size}")
            else:
                self.context_label.setText(f"context {T} / {MAX_TOKENS} max")
                self.context_label.setToolTip(
                    "An LSTM has no context window: its memory is the cell state. "
                    f"A run holds at most {MAX_TOKENS} tokens."
                )
        else:
            self.context_label.setText(f"{T} tokens" if trace is not None else "")

    def message(self, text: str) -> None:
        """Show a line in the status bar (warnings, why a run stopped, failures)."""
        self.messages.append(text)
        self.statusBar().showMessage(text, 20_000)

    # == transport ========================================================================================
    def _update_actions(self) -> None:
        has_model = self.info is not None
        has_trace = self.trace is not None
        t = self.transport
        t.reset_action.setEnabled(has_model)
        t.back_action.setEnabled(has_trace)
        t.forward_action.setEnabled(has_trace)
        t.play_action.setEnabled(has_trace)
        self.generate_bar.generate_action.setEnabled(has_model)
        controls = getattr(self, "memory_controls", None)
        if controls is not None and controls.busy:  # adding documents uses the model: no stepping meanwhile
            for action in (
                t.reset_action,
                t.forward_action,
                t.play_action,
                self.generate_bar.generate_action,
            ):
                action.setEnabled(False)

    def _ensure_fed(self) -> bool:
        """Queue the editor's text if it has not been read yet. False when there is nothing to read."""
        if self.info is None:
            return False
        text = self.editor.text()
        if self._fed_text is None:
            if not text.strip():
                if self.trace is None or not len(self.trace):
                    self.message("type or open a text first")
                    return False
                return True
            self._fed_text = text
            self.worker.feed_requested.emit(text)
            return True
        if text != self._fed_text:
            if text.startswith(self._fed_text):
                self.worker.feed_requested.emit(text[len(self._fed_text) :])
                self._fed_text = text
            else:
                self.message("the text was edited: Reset (Home) reads it again from the start")
        return True

    def step_forward(self) -> None:
        """Next token of the trace; at its end, ask the worker to read (or generate) one more."""
        if self.trace is None:
            return
        T = self._known_steps  # not len(trace): a step the worker has not yet reported is not shown yet
        cursor = self.view.state.cursor
        if cursor < T - 1:
            self.view.update(cursor=cursor + 1, follow=cursor + 1 == T - 1)
            return
        if self.info is None:
            self.message("end of the saved trace")
            return
        self.view.update(follow=True)
        if self._running:
            return
        if self._ensure_fed() or T:
            self.worker.step_requested.emit()

    def step_back(self) -> None:
        cursor = self.view.state.cursor
        if cursor > 0:
            self.view.update(cursor=cursor - 1, follow=False)

    def scrub_to(self, index: int) -> None:
        """Move the cursor to a step (a click on a token). Recomputes nothing."""
        if self.trace is None or not 0 <= index < len(self.trace):
            return
        self.view.update(cursor=index, follow=index == self._known_steps - 1)

    def set_playing(self, playing: bool) -> None:
        """Play: replay the trace from the cursor if scrubbed back, then read the rest of the text."""
        if not playing:
            self._replay_timer.stop()
            if self._running:
                self.worker.pause_requested.emit()
            self.transport.set_playing(False)
            return
        if self.trace is None:
            self.transport.set_playing(False)
            return
        self.transport.set_playing(True)
        if self.view.state.cursor < self._known_steps - 1:
            self.view.update(follow=False)
            self._replay_timer.start(self._replay_interval())
            return
        self._play_model()

    def toggle_play(self) -> None:
        self.set_playing(not (self._running or self._replay_timer.isActive()))

    def _play_model(self) -> None:
        if self.info is None:
            self.transport.set_playing(False)
            return
        self.view.update(follow=True)
        if not self._ensure_fed():
            self.transport.set_playing(False)
            return
        self.worker.play_requested.emit(self.transport.tokens_per_second())

    def _replay_interval(self) -> int:
        speed = self.transport.tokens_per_second()
        return REDRAW_INTERVAL_MS if speed <= 0 else max(1, int(1000 / speed))

    def _replay_tick(self) -> None:
        T = 0 if self.trace is None else self._known_steps
        cursor = self.view.state.cursor
        if cursor < T - 1:
            self.view.update(cursor=cursor + 1)
            return
        self._replay_timer.stop()
        if self.info is not None:
            self._play_model()
        else:
            self.transport.set_playing(False)

    def reset(self) -> None:
        """Forget the run and queue the editor's text from the start (played on Space or Step)."""
        if self.info is None:
            return
        self._replay_timer.stop()
        self._fed_text = None
        self._rate = 0.0
        self.worker.reset_requested.emit("")
        self.transport.set_playing(False)

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
        if not self._ensure_fed():
            return
        self._replay_timer.stop()
        self.view.update(follow=True)
        self.worker.generate_requested.emit(
            self.generate_bar.tokens(), sampling, self.transport.tokens_per_second()
        )

    def _run_from_editor(self) -> None:
        self.strip.setFocus()
        if (
            self.info is not None
            and self._fed_text is not None
            and not self.editor.text().startswith(self._fed_text)
        ):
            self.reset()
        self.set_playing(True)

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
        for name, action in getattr(self, "theme_actions", {}).items():
            action.setChecked(name == state.theme)
        for panel in self.panels.values():
            self._safe(panel, "apply_theme", state)
        self.schedule_redraw()

    def open_text_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a text", str(Path.home()), "Text (*.txt *.md *.py *.rst);;All files (*)"
        )
        if path:
            self.editor.load_file(path)

    def _on_text_file_loaded(self, path: str, warnings: list) -> None:
        for warning in warnings:
            self.message(warning)
        self.message(f"opened {path}: Home (reset) then Space reads it")
        if self.info is not None and self._fed_text is not None:
            self.reset()

    def open_model_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a model folder", str(Path.home()))
        if folder:
            self.load_model(folder)

    def open_trace_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a trace", str(Path.home()), "memviz traces (*.memviz)"
        )
        if path:
            try:
                self.open_trace(path)
            except MemvizError as exc:
                self._show_error("Could not open the trace", str(exc))

    def show_model_picker(self) -> ModelPicker:
        if self.picker is None:
            self.picker = ModelPicker(self.settings, self)
            self.picker.chosen.connect(self.load_model)
        self.picker.refresh_recent()
        self.picker.set_loading(self._loading)
        self.picker.show()
        self.picker.raise_()
        return self.picker

    # == closing ==========================================================================================
    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Save the layout, stop the worker. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._replay_timer.stop()
        self._redraw_timer.stop()
        if self.docks:
            self._save_layout()
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.sync()
        self.memory_controls.cancel_add()
        self.memory_controls.wait()
        self._worker_thread.stop()
