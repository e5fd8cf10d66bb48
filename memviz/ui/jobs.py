"""One idiom for one-off jobs: open a store, add documents, remember a run, encode an animation.

A `Job` is a piece of work with progress, cancel and finished / failed signals. A runner executes
it on its thread: jobs that touch the model go to the session's worker (`Worker.submit`, the one
thread that runs the model), model-free jobs to a `JobThread`. Both runners take a job through a
queued signal, so the UI thread never waits; the job's signals reach UI objects queued as well.
Connect them to methods of QObjects that live on the UI thread (bound slots), not to lambdas: the
receiver's thread decides where a queued slot runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from PySide6.QtCore import QObject, QThread, Signal, Slot

from memviz.errors import MemvizError

log = logging.getLogger(__name__)


def one_line(exc: BaseException) -> str:
    """A user-facing one-line reason for an exception."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, MemvizError):
        return first or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__


class Job(QObject):
    """`work(job)` run once on a runner's thread. It may call `job.report(...)` and `job.produce(...)`
    and should check `job.cancelled` between pieces; its return value is the result."""

    progress = Signal(int, int, str)  # done, total, what is being done
    produced = Signal(object)  # a piece of the result as it comes (one document added, ...)
    finished = Signal(object)  # the result
    failed = Signal(str)  # one-line reason
    done = Signal()  # after finished or failed

    def __init__(self, work: Callable[[Job], object], label: str = "") -> None:
        super().__init__()
        self._work = work
        self.label = label  # what the status bar says while it runs ("adding documents…")
        self.result: object = None
        self.error: str | None = None
        self._cancel = threading.Event()
        self._ended = threading.Event()

    # -- any thread -------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the work to stop at its next check (what it finished stays)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the job has ended (shutdown, tests). True if it has."""
        return self._ended.wait(timeout_s)

    # -- the runner's thread ----------------------------------------------------------------------
    def report(self, done: int, total: int, text: str = "") -> None:
        self.progress.emit(done, total, text)

    def produce(self, piece: object) -> None:
        self.produced.emit(piece)

    def execute(self) -> None:
        """Run the work here and now; never raises (a failure is reported through `failed`)."""
        try:
            result = self._work(self)
        except MemvizError as exc:
            self.error = str(exc).strip() or exc.__class__.__name__
        except Exception as exc:  # noqa: BLE001 - shown to the user, never a crash of the runner
            log.debug("job %r failed", self.label, exc_info=True)
            self.error = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
        else:
            self.result = result
        self._ended.set()
        if self.error is None:
            self.finished.emit(self.result)
        else:
            self.failed.emit(self.error)
        self.done.emit()


class JobRunner(Protocol):
    """Something that runs jobs on its own thread, in the order they were submitted."""

    def submit(self, job: Job) -> None: ...


class _Executor(QObject):
    requested = Signal(object)

    def __init__(self, owner: JobThread) -> None:
        super().__init__()
        self._owner = owner
        self.requested.connect(self._run)

    @Slot(object)
    def _run(self, job: Job) -> None:
        job.execute()
        self._owner._job_ended()


class JobThread(QObject):
    """A thread for model-free jobs (encoding an animation). It runs only while it has jobs, so a
    window closed in the middle leaves no thread behind once the job ends; `stop()` waits for it."""

    def __init__(self, name: str = "memviz-jobs", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName(name)
        self._executor = _Executor(self)
        self._executor.moveToThread(self._thread)
        self._lock = threading.Lock()
        self._pending = 0
        self._quitting = False

    def submit(self, job: Job) -> None:
        with self._lock:
            self._pending += 1
            if self._quitting:  # the loop is ending after the last job: let it end, start afresh
                self._thread.wait()
                self._quitting = False
            if not self._thread.isRunning():
                self._thread.start()
        self._executor.requested.emit(job)

    def _job_ended(self) -> None:  # on the job thread
        with self._lock:
            self._pending -= 1
            if self._pending == 0:
                self._quitting = True
                self._thread.quit()

    @property
    def busy(self) -> bool:
        return self._pending > 0

    def stop(self, timeout_ms: int = 30_000) -> bool:
        """Wait for the jobs in flight (cancel them first) and end the thread."""
        self._thread.quit()
        return self._thread.wait(timeout_ms)
