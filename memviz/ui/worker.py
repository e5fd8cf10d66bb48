"""The worker: owns the Session on its own thread. The UI thread asks, the worker steps and signals.

Every touch of the model (loading, reading, sampling, resetting, and the one-off jobs that need it:
opening or creating a memory store, adding documents, remembering a run) happens on the worker's
thread: one owner of the model. A job submitted during a run suspends the run (`run_suspended`)
and the run goes on after it, so a document added while playing cannot disturb the steps.
Runs (play, generate) are driven by a timer in the worker's own event loop, one small batch of
steps per tick, so that requests from the UI (pause, cancel, a new model) are answered between
two steps and never wait for a whole run to finish.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from memviz.core.sampling import SamplingConfig
from memviz.errors import MemvizError
from memviz.ui.jobs import Job, one_line

__all__ = ["BATCH_SECONDS", "Worker", "WorkerThread", "leave_a_core_for_the_ui", "one_line"]

log = logging.getLogger(__name__)

# At full speed, one timer tick steps until this much time has passed, then yields to the event loop.
BATCH_SECONDS = 0.015


def leave_a_core_for_the_ui() -> int:
    """Cap torch's intra-op threads at (cores - 1), so the UI thread always has a core to run on.

    On a small machine torch's spinning worker threads otherwise take every core and the event loop
    stalls for a tenth of a second at a time while a model generates. Returns the thread count.
    """
    import os

    import torch

    cores = os.cpu_count() or 1
    wanted = max(1, cores - 1)
    if torch.get_num_threads() > wanted:
        torch.set_num_threads(wanted)
    return torch.get_num_threads()


class Worker(QObject):
    """Lives on a QThread. Call it only through its request signals (or `invoke`), never directly."""

    # -- requests (emitted by the UI thread, run on the worker's thread) --------------------------
    load_requested = Signal(str)
    feed_requested = Signal(str)
    step_requested = Signal()
    play_requested = Signal(float)  # tokens per second; 0 = as fast as possible
    generate_requested = Signal(int, object, float)  # n, SamplingConfig, tokens per second
    speed_requested = Signal(float)
    pause_requested = Signal()
    reset_requested = Signal(str)  # text to queue after the reset ("" = none)
    memory_requested = Signal(object, object)  # MemoryIndex or None, RecallSettings or None
    job_requested = Signal(object)  # a Job that needs the model (use `submit`)

    # -- reports (emitted on the worker's thread, received on the UI thread) ----------------------
    loading = Signal(str)  # spec
    loaded = Signal(object, object)  # Trace, ModelInfo
    load_failed = Signal(str, str)  # spec, one-line reason
    trace_reset = Signal(object)  # the new, empty Trace
    stepped = Signal(int, float)  # newest step index, tokens per second of the current run
    warned = Signal(str)
    stopped = Signal(str)  # why a run ended ("" = it simply finished)
    running_changed = Signal(str)  # "play", "generate" or "" (idle)
    failed = Signal(str)  # one-line reason a request failed
    run_suspended = Signal(str)  # a job holds the model during a run: its label; "" when the run goes on

    def __init__(self) -> None:
        super().__init__()
        self.session = None
        self.info = None
        self._timer: QTimer | None = None
        self._mode = ""
        self._speed = 0.0
        self._run_steps = 0
        self._run_started = 0.0
        self._rate = 0.0
        self.load_requested.connect(self._load)
        self.feed_requested.connect(self._feed)
        self.step_requested.connect(self._step_once)
        self.play_requested.connect(self._play)
        self.generate_requested.connect(self._generate)
        self.speed_requested.connect(self._set_speed)
        self.pause_requested.connect(self._pause)
        self.reset_requested.connect(self._reset)
        self.memory_requested.connect(self._set_memory)
        self.job_requested.connect(self._run_job)

    def submit(self, job: Job) -> None:
        """Queue a job that needs the model (any thread). Jobs and steps run one at a time, in order."""
        self.job_requested.emit(job)

    # -- helpers ------------------------------------------------------------------------------
    def _ensure_timer(self) -> QTimer:
        if self._timer is None:  # created lazily, on the worker's thread
            self._timer = QTimer(self)
            self._timer.timeout.connect(self._tick)
        return self._timer

    def _interval_ms(self) -> int:
        return 0 if self._speed <= 0 else max(1, int(round(1000.0 / self._speed)))

    def _start_run(self, mode: str, speed: float) -> None:
        self._speed = speed
        self._mode = mode
        self._run_steps = 0
        self._run_started = time.perf_counter()
        timer = self._ensure_timer()
        timer.start(self._interval_ms())
        self.running_changed.emit(mode)

    def _stop_run(self, reason: str = "") -> None:
        if self._timer is not None:
            self._timer.stop()
        if self._mode:
            self._mode = ""
            self.running_changed.emit("")
            self.stopped.emit(reason)

    # -- slots (worker thread) --------------------------------------------------------------------
    @Slot(str)
    def _load(self, spec: str) -> None:
        from memviz.backends.registry import load_backend
        from memviz.core.session import Session

        self._stop_run("a new model is loading")
        self.loading.emit(spec)
        leave_a_core_for_the_ui()
        try:
            backend = load_backend(spec)
            session = Session(backend, sampling=SamplingConfig(temperature=0.0))
        except Exception as exc:  # a broken folder, no network, a bug: never crash the app
            log.debug("loading %s failed", spec, exc_info=True)
            self.load_failed.emit(spec, one_line(exc))
            return
        self.session = session
        self.info = backend.info
        self._rate = 0.0
        self.loaded.emit(session.trace, backend.info)

    @Slot(str)
    def _feed(self, text: str) -> None:
        if self.session is None:
            self.failed.emit("no model loaded")
            return
        try:
            for warning in self.session.feed(text):
                self.warned.emit(warning)
        except MemvizError as exc:
            self.failed.emit(one_line(exc))

    @Slot(str)
    def _reset(self, text: str) -> None:
        self._stop_run()
        if self.session is None:
            return
        self.session.reset()
        self._rate = 0.0
        self.trace_reset.emit(self.session.trace)
        if text:
            self._feed(text)

    def _do_step(self) -> int | None:
        """One step; None when the run has nothing left (or failed, already reported)."""
        session = self.session
        try:
            index = session.step()
        except MemvizError as exc:
            session.cancel()
            self.failed.emit(one_line(exc))
            return None
        except Exception as exc:
            log.exception("step failed")
            session.cancel()
            self.failed.emit(one_line(exc))
            return None
        return index

    @Slot()
    def _step_once(self) -> None:
        if self.session is None:
            self.failed.emit("no model loaded")
            return
        if self._mode:
            return  # a run is going: the next step comes anyway
        if not self.session.pending:
            self.session.generate(1)
        started = time.perf_counter()
        index = self._do_step()
        if index is None:
            if self.session.stop_reason:
                self.stopped.emit(self.session.stop_reason)
            return
        self._rate = 1.0 / max(time.perf_counter() - started, 1e-6)
        self.stepped.emit(index, self._rate)

    @Slot(float)
    def _play(self, speed: float) -> None:
        if self.session is None:
            self.failed.emit("no model loaded")
            return
        if not self.session.pending:
            self.stopped.emit("end of the text: generate, or reset to read again")
            return
        self._start_run("play", speed)

    @Slot(int, object, float)
    def _generate(self, n: int, sampling: SamplingConfig | None, speed: float) -> None:
        if self.session is None:
            self.failed.emit("no model loaded")
            return
        if sampling is not None:
            self.session.set_sampling(sampling)
        try:
            self.session.generate(n)
        except MemvizError as exc:
            self.failed.emit(one_line(exc))
            return
        if self.session.pending:
            self._start_run("generate", speed)

    @Slot(object, object)
    def _set_memory(self, memory, recall) -> None:
        """Recall from a long-term memory store (None: none). The run starts again: every step of a
        trace must carry the same memory columns (k retrieved memories or none)."""
        if self.session is None:
            self.failed.emit("no model loaded")
            return
        try:
            self.session.set_memory(memory, recall)
        except MemvizError as exc:
            self.failed.emit(one_line(exc))
            return
        self._reset("")

    @Slot(float)
    def _set_speed(self, speed: float) -> None:
        self._speed = speed
        if self._mode and self._timer is not None:
            self._timer.setInterval(self._interval_ms())

    @Slot()
    def _pause(self) -> None:
        if self.session is not None and self._mode == "generate":
            self.session.cancel()  # tokens not yet generated are dropped; queued text stays for play
        self._stop_run("paused")

    @Slot()
    def _tick(self) -> None:
        session = self.session
        if session is None or not self._mode:
            self._stop_run()
            return
        deadline = time.perf_counter() + BATCH_SECONDS
        last = None
        while True:
            if not session.pending:
                break
            index = self._do_step()
            if index is None:
                break
            last = index
            self._run_steps += 1
            if self._speed > 0 or time.perf_counter() >= deadline:
                break
        if last is not None:
            elapsed = time.perf_counter() - self._run_started
            self._rate = self._run_steps / elapsed if elapsed > 0 else 0.0
            self.stepped.emit(last, self._rate)
        if not session.pending:
            self._stop_run(session.stop_reason or "")

    @Slot(object)
    def _run_job(self, job: Job) -> None:
        """Run a job between two steps. A run going on waits for it, then goes on where it was."""
        mode = self._mode
        if mode and self._timer is not None:
            self._timer.stop()
            self.run_suspended.emit(job.label or "busy")
        started = time.perf_counter()
        job.execute()
        if mode:
            self._run_started += time.perf_counter() - started  # the rate counts stepping time only
            self.run_suspended.emit("")
            if self._mode == mode and self._timer is not None:
                self._timer.start(self._interval_ms())

    @Slot()
    def shutdown(self) -> None:
        self._stop_run()
        if self._timer is not None:
            self._timer.deleteLater()
            self._timer = None


class WorkerThread(QObject):
    """Owns the thread and the worker on it; `stop()` ends both (called when the window closes)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("memviz-worker")
        self.worker = Worker()
        self.worker.moveToThread(self.thread)
        self.thread.start()

    def stop(self, timeout_ms: int = 30_000) -> None:
        if not self.thread.isRunning():
            return
        # Run shutdown on the worker's thread (it owns the timer), then end the loop.
        QTimer.singleShot(0, self.worker, self.worker.shutdown)
        self.thread.quit()
        self.thread.wait(timeout_ms)
