"""Long attention work off the UI thread: one worker thread, the latest request of each kind wins.

Rebuilding a head's max-pooled overview at T = 8192 costs about a second (O(T^2 d)), a zoomed
tile a good fraction of one. `LatestJobs.submit(kind, fn)` runs `fn(cancelled)` on the panel's own
one-thread pool; a newer request of the same kind sets the older one's `cancelled` (it stops
between blocks), and only the newest result of a kind is delivered, through a queued signal, on the
UI thread. The pool belongs to the panel: deleting the panel waits for the running block.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class _Relay(QObject):
    """Carries a result from the worker thread to the UI thread (a queued connection)."""

    finished = Signal(str, int, object)  # kind, generation, result


class _Job(QRunnable):
    def __init__(self, relay: _Relay, kind: str, generation: int, fn, cancel: threading.Event) -> None:
        super().__init__()
        self.relay, self.kind, self.generation, self.fn, self.cancel = relay, kind, generation, fn, cancel

    def run(self) -> None:
        if self.cancel.is_set():
            return
        try:
            result = self.fn(self.cancel.is_set)
        except Exception as exc:  # noqa: BLE001 - delivered to the panel, which says it in one line
            result = exc
        try:
            self.relay.finished.emit(self.kind, self.generation, result)
        except RuntimeError:  # the panel is gone (the app closed): nobody to deliver to
            pass


class LatestJobs(QObject):
    """`submit(kind, fn)`; `done(kind, result)` on the UI thread for the newest job of each kind."""

    done = Signal(str, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)  # one long job at a time: the machine's other cores stay free
        self._relay = _Relay()
        self._relay.finished.connect(self._finished)  # emitted on the worker: queued to this thread
        self._generation: dict[str, int] = {}
        self._cancel: dict[str, threading.Event] = {}
        self.running: set[str] = set()
        # deleting the panel deletes the pool, which waits for its job: stop that job first (at its
        # next block). The closure holds the events, not self (gone by then).
        events = self._cancel
        self.destroyed.connect(lambda *_: [event.set() for event in list(events.values())])

    def submit(self, kind: str, fn: Callable[[Callable[[], bool]], object]) -> None:
        self.cancel(kind)
        generation = self._generation.get(kind, 0) + 1
        self._generation[kind] = generation
        event = self._cancel[kind] = threading.Event()
        self.running.add(kind)
        self.pool.start(_Job(self._relay, kind, generation, fn, event))

    def cancel(self, kind: str | None = None) -> None:
        """Stop the job of `kind` (every kind: None); its result is never delivered."""
        for name in [kind] if kind is not None else list(self._cancel):
            event = self._cancel.pop(name, None)
            if event is not None:
                event.set()
            self._generation[name] = self._generation.get(name, 0) + 1
            self.running.discard(name)

    def busy(self, kind: str) -> bool:
        return kind in self.running

    def wait(self, msecs: int = -1) -> bool:
        """Block until the pool is idle (tests, benchmarks, shutting down)."""
        return self.pool.waitForDone(msecs)

    def _finished(self, kind: str, generation: int, result: object) -> None:
        if generation != self._generation.get(kind):
            return  # a newer request replaced it
        self.running.discard(kind)
        self._cancel.pop(kind, None)
        self.done.emit(kind, result)
