"""Controls for the long-term memory: store picker, add documents (progress, cancel), k, lambda, T,
and the opt-in "remember past runs". The window wires the signals; this widget never runs the model
except to add documents, in its own QThread.

Signals:
    storeChanged(object)      an open MemoryStore, or None when memory is switched off / failed
    recallChanged(object)     a RecallSettings (k, lam, temperature) after any spin box edit
    rememberChanged(bool)     the "remember past runs" checkbox
    addFinished(object)       an AddResult per document added
    busyChanged(bool)         True while documents are being added (keep the session idle meanwhile)
    error(str)                a one-line message for the status bar
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from memviz.core.session import RecallSettings
from memviz.errors import MemvizError


class AddWorker(QObject):
    """Adds files to a store in a worker thread; cancel() stops after the batch in flight."""

    progress = Signal(str, int, int)  # file name, done, total
    added = Signal(object)  # AddResult
    failed = Signal(str)
    done = Signal()

    def __init__(self, store, backend, paths: list[str]) -> None:
        super().__init__()
        self.store, self.backend, self.paths = store, backend, paths
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    @Slot()
    def run(self) -> None:
        from memviz.textio import read_text_file

        try:
            for path in self.paths:
                if self._cancelled:
                    break
                name = Path(path).name
                text, _warnings = read_text_file(path)
                result = self.store.add_document(
                    text,
                    name,
                    self.backend,
                    progress=lambda d, t, name=name: self.progress.emit(name, d, t),
                    cancelled=lambda: self._cancelled,
                )
                self.added.emit(result)
        except MemvizError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - shown to the user, never a crash of the worker
            self.failed.emit(f"{exc.__class__.__name__}: {exc}")
        finally:
            self.done.emit()


class MemoryControls(QWidget):
    storeChanged = Signal(object)  # noqa: N815 - Qt signal naming
    recallChanged = Signal(object)  # noqa: N815
    rememberChanged = Signal(bool)  # noqa: N815
    addFinished = Signal(object)  # noqa: N815
    busyChanged = Signal(bool)  # noqa: N815
    error = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = None
        self.store = None
        self._thread: QThread | None = None
        self._worker: AddWorker | None = None

        self.store_label = QLabel("no store")
        self.store_label.setWordWrap(True)
        self.open_button = QPushButton("Open store\u2026")
        self.new_button = QPushButton("New store\u2026")
        self.default_button = QPushButton("Default")
        self.default_button.setToolTip("The model's store in the user data folder (created if needed)")
        self.off_button = QPushButton("Off")
        self.add_button = QPushButton("Add documents\u2026")
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m entries")
        self.progress_label = QLabel("")
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 1024)
        self.lambda_spin = QDoubleSpinBox()
        self.lambda_spin.setRange(0.0, 1.0)
        self.lambda_spin.setSingleStep(0.05)
        self.lambda_spin.setDecimals(2)
        self.temperature_spin = QDoubleSpinBox()
        self.temperature_spin.setRange(0.0001, 10000.0)
        self.temperature_spin.setDecimals(4)
        self.temperature_spin.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)
        self.remember_box = QCheckBox("Remember past runs")
        self.remember_box.setToolTip("After each run, store what the model read so later runs can recall it")
        self.set_recall(RecallSettings())

        buttons = QHBoxLayout()
        for b in (self.open_button, self.new_button, self.default_button, self.off_button):
            buttons.addWidget(b)
        adding = QHBoxLayout()
        adding.addWidget(self.add_button)
        adding.addWidget(self.progress, 1)
        adding.addWidget(self.cancel_button)
        form = QFormLayout()
        form.addRow("k (neighbours)", self.k_spin)
        form.addRow("\u03bb (memory weight)", self.lambda_spin)
        form.addRow("temperature", self.temperature_spin)
        layout = QVBoxLayout(self)
        layout.addWidget(self.store_label)
        layout.addLayout(buttons)
        layout.addLayout(adding)
        layout.addWidget(self.progress_label)
        layout.addLayout(form)
        layout.addWidget(self.remember_box)
        layout.addStretch(1)

        self.open_button.clicked.connect(lambda: self._pick(create=False))
        self.new_button.clicked.connect(lambda: self._pick(create=True))
        self.default_button.clicked.connect(lambda: self.open_store(None, create=True))
        self.off_button.clicked.connect(lambda: self._set_store(None))
        self.add_button.clicked.connect(self._pick_documents)
        self.cancel_button.clicked.connect(self.cancel_add)
        for spin in (self.k_spin, self.lambda_spin, self.temperature_spin):
            spin.valueChanged.connect(lambda _v: self.recallChanged.emit(self.recall))
        self.remember_box.toggled.connect(self.rememberChanged)
        self._sync_enabled()

    # -- API for the window ---------------------------------------------------------------------------
    @property
    def recall(self) -> RecallSettings:
        return RecallSettings(
            k=self.k_spin.value(), lam=self.lambda_spin.value(), temperature=self.temperature_spin.value()
        )

    def set_recall(self, recall: RecallSettings) -> None:
        for spin, value in (
            (self.k_spin, recall.k),
            (self.lambda_spin, recall.lam),
            (self.temperature_spin, recall.temperature),
        ):
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)

    @property
    def remember_runs(self) -> bool:
        return self.remember_box.isChecked()

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def set_backend(self, backend) -> None:
        """The model changed: a store of the old model no longer fits, so memory is switched off."""
        self.backend = backend
        if self.store is not None and backend is not None and self.store.fingerprint != backend.fingerprint():
            self._set_store(None)
        self._sync_enabled()

    def open_store(self, path: str | None, create: bool = False) -> bool:
        """Open (or create) a store for the current model; None: the model's default store."""
        if self.backend is None:
            self.error.emit("load a model first: a memory store belongs to one model")
            return False
        from memviz.memory.store import MemoryStore

        try:
            store = MemoryStore.open(path, backend=self.backend, create=create)
        except MemvizError as exc:
            self.error.emit(str(exc))
            return False
        self._set_store(store)
        return True

    def remember(self, session) -> None:
        """Call after a run ends: stores it when "remember past runs" is on (quick: keys are computed)."""
        if not (self.remember_runs and self.store is not None and not self.busy):
            return
        try:
            result = self.store.remember_run(session)
        except MemvizError as exc:
            self.error.emit(str(exc))
            return
        if result is not None:
            self._show_store()
            self.addFinished.emit(result)

    def add_documents(self, paths: list[str]) -> None:
        if self.store is None or self.backend is None or self.busy or not paths:
            return
        self._thread = QThread(self)
        self._worker = AddWorker(self.store, self.backend, list(paths))
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self._on_progress)
        self._worker.added.connect(self._on_added)
        self._worker.failed.connect(self.error)
        self._worker.done.connect(self._on_done)
        self.progress.setValue(0)
        self._sync_enabled(adding=True)
        self.busyChanged.emit(True)
        self._thread.start()

    def cancel_add(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self.progress_label.setText("cancelling after the batch in flight\u2026")

    def wait(self, ms: int = 30_000) -> bool:
        """Block until adding is done (tests, and the window's closeEvent after cancel_add())."""
        thread = self._thread
        return thread is None or thread.wait(ms)

    # -- internals --------------------------------------------------------------------------------------
    def _pick(self, create: bool) -> None:
        if create:
            path, _ = QFileDialog.getSaveFileName(
                self, "New memory store", "memory.sqlite", "Memory stores (*.sqlite)"
            )
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Open memory store", "", "Memory stores (*.sqlite)")
        if path:
            self.open_store(path, create=create)

    def _pick_documents(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Add documents to memory", "", "Text (*.txt *.md *.py *.rst);;All files (*)"
        )
        self.add_documents(paths)

    def _set_store(self, store) -> None:
        if self.busy:
            self.error.emit("wait for the documents being added (or cancel) before changing the store")
            return
        old = self.store
        self.store = store
        self._show_store()
        self._sync_enabled()
        self.storeChanged.emit(store)
        if old is not None and old is not store:
            old.close()

    def _show_store(self) -> None:
        s = self.store
        self.store_label.setText(
            "memory off" if s is None else f"{s.path.name}: {len(s)} entries ({s.model_name})"
        )
        self.store_label.setToolTip("" if s is None else str(s.path))

    def _sync_enabled(self, adding: bool = False) -> None:
        has_store = self.store is not None
        for b in (self.open_button, self.new_button, self.default_button):
            b.setEnabled(self.backend is not None and not adding)
        self.off_button.setEnabled(has_store and not adding)
        self.add_button.setEnabled(has_store and self.backend is not None and not adding)
        self.cancel_button.setEnabled(adding)
        self.progress.setVisible(adding)

    @Slot(str, int, int)
    def _on_progress(self, name: str, done: int, total: int) -> None:
        self.progress.setMaximum(total)
        self.progress.setValue(done)
        self.progress_label.setText(f"adding {name}")

    @Slot(object)
    def _on_added(self, result) -> None:
        state = "cancelled, kept" if result.cancelled else "added"
        self.progress_label.setText(f"{state} {result.entries} entries ({result.rate:.0f} entries/s)")
        self._show_store()
        self.addFinished.emit(result)

    @Slot()
    def _on_done(self) -> None:
        thread = self._thread
        self._thread, self._worker = None, None
        if thread is not None:
            thread.quit()
            thread.wait()
        self._sync_enabled()
        self._show_store()
        self.busyChanged.emit(False)
