"""The worker owns the Session on its own thread: loading, stepping, playing, generating, pausing."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from memviz.core.sampling import SamplingConfig  # noqa: E402
from memviz.errors import MemvizError  # noqa: E402
from memviz.ui.worker import WorkerThread, one_line  # noqa: E402


class Recorder:
    """Collects the worker's reports (delivered on the test's thread by queued connections)."""

    def __init__(self, worker) -> None:
        self.steps: list[int] = []
        self.stopped: list[str] = []
        self.failed: list[str] = []
        self.warned: list[str] = []
        self.modes: list[str] = []
        self.loaded = None
        self.load_failed = None
        self.trace = None
        self.step_threads: set[int] = set()
        worker.stepped.connect(lambda i, _rate: self.steps.append(i))
        worker.stopped.connect(self.stopped.append)
        worker.failed.connect(self.failed.append)
        worker.warned.connect(self.warned.append)
        worker.running_changed.connect(self.modes.append)
        worker.loaded.connect(self._loaded)
        worker.load_failed.connect(lambda spec, reason: setattr(self, "load_failed", (spec, reason)))
        worker.trace_reset.connect(lambda trace: setattr(self, "trace", trace))

    def _loaded(self, trace, info) -> None:
        self.loaded = info
        self.trace = trace


@pytest.fixture
def worker(qtbot):
    owner = WorkerThread()
    yield owner.worker
    owner.stop()
    assert not owner.thread.isRunning()


def load(qtbot, worker, folder) -> Recorder:
    rec = Recorder(worker)
    worker.load_requested.emit(str(folder))
    qtbot.waitUntil(lambda: rec.loaded is not None or rec.load_failed is not None, timeout=60_000)
    assert rec.load_failed is None, rec.load_failed
    return rec


def test_load_and_step_runs_on_the_worker_thread(qtbot, worker, lstm_dir):
    rec = load(qtbot, worker, lstm_dir)
    assert rec.loaded.architecture == "lstm"
    seen = []
    real_step = worker.session.step

    def spy():
        seen.append(threading.get_ident())
        return real_step()

    worker.session.step = spy
    worker.feed_requested.emit("hello")
    for _ in range(3):
        worker.step_requested.emit()
    qtbot.waitUntil(lambda: len(rec.steps) == 3, timeout=10_000)
    assert rec.steps == [0, 1, 2]
    assert seen and all(ident != threading.get_ident() for ident in seen)
    assert rec.trace.token_text[:3] == list("hel")


def test_play_reads_the_whole_text_then_stops(qtbot, worker, lstm_dir):
    rec = load(qtbot, worker, lstm_dir)
    worker.feed_requested.emit("def f(x): return x\n" * 3)
    worker.play_requested.emit(0.0)
    qtbot.waitUntil(lambda: rec.modes[-1:] == [""], timeout=20_000)
    assert rec.modes[0] == "play"
    assert len(rec.trace) == len("def f(x): return x\n" * 3)
    assert rec.steps[-1] == len(rec.trace) - 1
    assert rec.stopped[-1] == ""
    assert not any(rec.trace.generated)


def test_generate_then_pause_keeps_what_was_read(qtbot, worker, lstm_dir):
    rec = load(qtbot, worker, lstm_dir)
    worker.feed_requested.emit("the fox")
    worker.generate_requested.emit(12, SamplingConfig(temperature=1.0, seed=3), 0.0)
    qtbot.waitUntil(lambda: rec.modes[-1:] == [""], timeout=20_000)
    trace = rec.trace
    assert len(trace) == 7 + 12
    assert trace.generated == [False] * 7 + [True] * 12
    assert trace.sampling["seed"] == 3

    # A slow generation paused at once: it stops early, nothing more is stepped afterwards.
    worker.generate_requested.emit(10_000, None, 5.0)
    qtbot.waitUntil(lambda: rec.modes[-1:] == ["generate"], timeout=5_000)
    worker.pause_requested.emit()
    qtbot.waitUntil(lambda: rec.modes[-1:] == [""], timeout=5_000)
    n = len(trace)
    assert n < 19 + 100
    assert rec.stopped[-1] == "paused"
    qtbot.wait(300)
    assert len(trace) == n


def test_reset_gives_a_new_empty_trace_and_queues_text(qtbot, worker, lstm_dir):
    rec = load(qtbot, worker, lstm_dir)
    first = rec.trace
    worker.feed_requested.emit("abc")
    worker.play_requested.emit(0.0)
    qtbot.waitUntil(lambda: len(first) == 3, timeout=10_000)
    worker.reset_requested.emit("xy")
    qtbot.waitUntil(lambda: rec.trace is not first, timeout=5_000)
    assert len(rec.trace) == 0 and len(first) == 3
    worker.play_requested.emit(0.0)
    qtbot.waitUntil(lambda: len(rec.trace) == 2, timeout=10_000)
    assert rec.trace.token_text == ["x", "y"]


def test_step_past_the_text_generates_one_token(qtbot, worker, gpt2_dir):
    rec = load(qtbot, worker, gpt2_dir)
    assert rec.loaded.architecture == "gpt2"
    worker.feed_requested.emit("The quick")
    worker.play_requested.emit(0.0)
    qtbot.waitUntil(lambda: rec.modes[-1:] == [""], timeout=20_000)
    n = len(rec.trace)
    worker.step_requested.emit()
    qtbot.waitUntil(lambda: len(rec.trace) == n + 1, timeout=10_000)
    assert rec.trace.generated[-1] is True
    assert rec.trace.attention_at(n).shape[-1] == n + 1
    np.testing.assert_allclose(rec.trace.attention_at(n).sum(-1), 1.0, atol=1e-5)


def test_failures_are_one_line_reports_not_crashes(qtbot, worker, tmp_path):
    rec = Recorder(worker)
    worker.load_requested.emit(str(tmp_path / "no-such-model"))
    qtbot.waitUntil(lambda: rec.load_failed is not None, timeout=20_000)
    spec, reason = rec.load_failed
    assert "no-such-model" in reason and "\n" not in reason
    worker.step_requested.emit()  # no model: reported, not raised
    qtbot.waitUntil(lambda: bool(rec.failed), timeout=5_000)
    assert rec.failed == ["no model loaded"]


def test_one_line():
    assert one_line(MemvizError("bad thing\nmore")) == "bad thing"
    assert one_line(ValueError("oops")) == "ValueError: oops"
    assert one_line(RuntimeError()) == "RuntimeError"


def test_memory_is_set_on_the_worker_thread(qtbot, worker, lstm_dir):
    from memviz.core.session import RecallSettings

    class OneMemory:
        def __init__(self):
            self.threads = set()

        def search(self, key, k):
            self.threads.add(threading.get_ident())
            ids = np.full(k, -1, dtype=np.int64)
            ids[0] = 7
            distances = np.zeros(k, dtype=np.float32)
            return ids, distances, np.zeros(k, dtype=np.int64)

        def manifest(self):
            return {"store": "test", "entries": 1}

    rec = load(qtbot, worker, lstm_dir)
    memory = OneMemory()
    worker.memory_requested.emit(memory, RecallSettings(k=2, lam=0.5))
    worker.feed_requested.emit("ab")
    worker.play_requested.emit(0.0)
    qtbot.waitUntil(lambda: len(rec.trace) == 2, timeout=10_000)
    assert rec.trace.memory["k"] == 2 and rec.trace.memory["lambda"] == 0.5
    assert rec.trace.array("memory_ids")[:, 0].tolist() == [7, 7]
    assert memory.threads and threading.get_ident() not in memory.threads
