"""Controls for the long-term memory: store picker, add documents (progress, cancel), k, lambda, T,
and the opt-in "remember past runs". The window wires the signals. This widget never runs the model
itself: opening (or creating) a store, adding documents and remembering a run are Jobs handed to
the runner it is given, the session's worker, which owns the model.

Signals:
    storeChanged(object)      an open MemoryStore, or None when memory is switched off / failed
    recallChanged(object)     a RecallSettings (k, lam, temperature) after any spin box edit
    rememberChanged(bool)     the "remember past runs" checkbox
    addFinished(object)       an AddResult per document added
    summary(str)              the same, said for people: "added notes.txt: 332 memories"
    busyChanged(bool)         True while documents are being added (the worker pauses a run meanwhile)
    error(str)                a one-line message for the status bar
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal, Slot
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
from memviz.options import MAX_KNN_K
from memviz.ui.jobs import Job, JobRunner

#: what the memory panel's scores mean (the store searches by squared L2 distance)
SCORES_TEXT = (
    "Scores are \u2212distance\u00b2: minus the squared distance between the model's state now and "
    "the stored one (0 = the same state; more negative = farther)."
)


def add_files(store, backend, paths: list[str], job: Job) -> list:
    """The work of "Add documents": each file read and stored in turn (on the session's worker)."""
    from memviz.ui.text_editor import read_text

    results = []
    for path in paths:
        if job.cancelled:
            break
        name = Path(path).name
        text, _warnings = read_text(path)
        result = store.add_document(
            text,
            name,
            backend,
            progress=lambda d, t, name=name: job.report(d, t, name),
            cancelled=lambda: job.cancelled,
        )
        results.append(result)
        job.produce((name, result))
    return results


class MemoryControls(QWidget):
    storeChanged = Signal(object)  # noqa: N815 - Qt signal naming
    recallChanged = Signal(object)  # noqa: N815
    rememberChanged = Signal(bool)  # noqa: N815
    addFinished = Signal(object)  # noqa: N815
    summary = Signal(str)  # one line per document added (or run remembered), for the status bar
    busyChanged = Signal(bool)  # noqa: N815
    error = Signal(str)

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner  # the session's worker: every job here needs the model
        self.backend = None
        self.store = None
        self._adding: Job | None = None
        self._jobs: set[Job] = set()  # submitted and not yet ended (kept alive until then)

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
        self.k_spin.setRange(1, MAX_KNN_K)  # the CLI's --knn-k bound (a search returns at most the store)
        self.k_spin.setToolTip(f"Neighbours recalled per step, 1 to {MAX_KNN_K} (kNN-LM used 1024)")
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
        self.scores_label = QLabel(SCORES_TEXT)
        self.scores_label.setObjectName("memoryScoresLegend")
        self.scores_label.setWordWrap(True)
        self.notice_label = QLabel("")  # why memory went off (a model switch), or which store opened
        self.notice_label.setObjectName("memoryNotice")
        self.notice_label.setWordWrap(True)
        self._last_name = ""  # the document whose AddResult comes next

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
        layout.addWidget(self.notice_label)
        layout.addLayout(buttons)
        layout.addLayout(adding)
        layout.addWidget(self.progress_label)
        layout.addLayout(form)
        layout.addWidget(self.remember_box)
        layout.addWidget(self.scores_label)
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
        return self._adding is not None

    def describe(self, result) -> str:
        """One line for the status bar: "added notes.txt: 332 memories"."""
        name, result = result if isinstance(result, tuple) else ("the run", result)
        state = "cancelled, kept" if result.cancelled else "added"
        total = f" ({len(self.store)} in the store)" if self.store is not None else ""
        return f"{state} {name}: {result.entries} memories{total}"

    def set_backend(self, backend, open_default: bool = True) -> None:
        """The model changed: a store of the old model no longer fits, so memory is switched off,
        and said so; the new model's default store is opened if it has one (`open_default`)."""
        old_backend, self.backend = self.backend, backend
        notice = ""
        if self.store is not None and backend is not None and self.store.fingerprint != backend.fingerprint():
            notice = f"memory off: {self.store.path.name} belongs to {self.store.model_name}, not {backend.info.name}"
            self._set_store(None)
        self._sync_enabled()
        if backend is None or backend is old_backend or self.store is not None:
            self._notify(notice)
            return
        from memviz.memory.store import default_store_path

        default = default_store_path(backend.info.name)
        if open_default and default.exists():
            self._notify(f"{notice}; opening {backend.info.name}'s store" if notice else "")
            self.open_store(str(default), create=False)
        elif notice:
            self._notify(f"{notice}; {backend.info.name} has no store yet (New store\u2026 or Default)")

    def _notify(self, text: str) -> None:
        self.notice_label.setText(text)
        if text:
            self.error.emit(text)

    def open_store(self, path: str | None, create: bool = False, on_failed=None) -> Job | None:
        """Open (or create) a store for the current model; None: the model's default store.

        Runs on the worker (creating a store reads the model); `storeChanged` follows. Returns the
        job, or None when refused at once (no model yet)."""
        if self.backend is None:
            self.error.emit("load a model first: a memory store belongs to one model")
            return None
        from memviz.memory.store import MemoryStore

        backend = self.backend
        job = Job(lambda _job: MemoryStore.open(path, backend=backend, create=create), "opening the store…")
        job.finished.connect(self._on_opened)
        if on_failed is not None:  # connected before the worker can run it: a quick failure is not lost
            job.failed.connect(on_failed)
        return self._submit(job)

    def remember(self, session) -> Job | None:
        """Call after a run ends: stores it when "remember past runs" is on (quick: keys are computed)."""
        if not (self.remember_runs and self.store is not None and not self.busy):
            return None
        store = self.store
        job = Job(lambda _job: store.remember_run(session), "remembering the run…")
        job.finished.connect(self._on_remembered)
        return self._submit(job)

    def add_documents(self, paths: list[str]) -> Job | None:
        if self.store is None or self.backend is None or self.busy or not paths:
            return None
        store, backend, paths = self.store, self.backend, list(paths)
        job = Job(lambda job: add_files(store, backend, paths, job), "adding documents\u2026")
        job.progress.connect(self._on_progress)
        job.produced.connect(self._on_added)
        job.done.connect(self._on_add_done)
        self._adding = job
        self.progress.setValue(0)
        self._sync_enabled(adding=True)
        self.busyChanged.emit(True)
        return self._submit(job)

    def cancel_add(self) -> None:
        if self._adding is not None:
            self._adding.cancel()
            self.progress_label.setText("cancelling after the batch in flight\u2026")

    def wait(self, ms: int = 30_000) -> bool:
        """Block until adding is done (the window's shutdown, after cancel_add())."""
        job = self._adding
        return job is None or job.wait(ms / 1000)

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
            "memory off" if s is None else f"{s.path.name}: {len(s)} memories ({s.model_name})"
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

    def _submit(self, job: Job) -> Job:
        self._jobs.add(job)
        job.failed.connect(self.error)
        job.done.connect(self._forget_job)
        self.runner.submit(job)
        return job

    @Slot()
    def _forget_job(self) -> None:
        self._jobs = {job for job in self._jobs if not job.ended}

    @Slot(object)
    def _on_opened(self, store) -> None:
        if self.backend is None or store.fingerprint != self.backend.fingerprint():
            store.close()  # the model changed while the store opened: it no longer fits
            return
        self._set_store(store)

    @Slot(object)
    def _on_remembered(self, result) -> None:
        if result is not None:
            self._show_store()
            self.addFinished.emit(result)
            self.summary.emit(self.describe(result))

    @Slot(int, int, str)
    def _on_progress(self, done: int, total: int, name: str) -> None:
        self._last_name = name
        self.progress.setMaximum(total)
        self.progress.setValue(done)
        self.progress_label.setText(f"adding {name}")

    @Slot(object)
    def _on_added(self, produced) -> None:
        name, result = produced
        self._show_store()
        line = self.describe(produced)
        self.progress_label.setText(f"{line}, {result.rate:.0f} a second")
        self.addFinished.emit(result)
        self.summary.emit(line)

    @Slot()
    def _on_add_done(self) -> None:
        self._adding = None
        self._sync_enabled()
        self._show_store()
        self.busyChanged.emit(False)
