"""The memory controls widget: open a store, add documents on the session's worker, cancel, recall settings."""

from __future__ import annotations

import pytest

from memviz.backends.registry import load_backend
from memviz.core.session import RecallSettings, Session
from memviz.memory.store import MemoryStore
from memviz.ui.memory_controls import MemoryControls
from memviz.ui.worker import WorkerThread


@pytest.fixture
def runner():
    owner = WorkerThread()
    yield owner.worker
    owner.stop()


def ran(qtbot, job) -> bool:
    """Wait for a job the controls submitted (and for its signals to arrive); True if it succeeded."""
    if job is None:
        return False
    qtbot.waitUntil(lambda: job.ended, timeout=60_000)
    qtbot.wait(50)  # its queued signals (storeChanged, addFinished) reach this thread
    return job.error is None


def test_open_add_cancel_and_settings(qtbot, tmp_path, lstm_dir, gpt2_dir, runner):
    backend = load_backend(str(lstm_dir))
    w = MemoryControls(runner)
    qtbot.addWidget(w)
    errors, stores, recalls, results = [], [], [], []
    w.error.connect(errors.append)
    w.storeChanged.connect(stores.append)
    w.recallChanged.connect(recalls.append)
    w.addFinished.connect(results.append)
    assert not ran(qtbot, w.open_store(str(tmp_path / "m.sqlite"), create=True)) and errors  # no model yet
    w.set_backend(backend)
    assert ran(qtbot, w.open_store(str(tmp_path / "m.sqlite"), create=True)) and stores[-1] is w.store
    doc = tmp_path / "a.txt"
    doc.write_text("The quick brown fox jumps over the lazy dog.\n" * 200)
    with qtbot.waitSignal(w.busyChanged, timeout=60_000, check_params_cb=lambda busy: busy is False):
        w.add_documents([str(doc)])
    assert results[-1].entries == len(w.store) == 45 * 200 - 1 and not results[-1].cancelled
    # cancel: what was committed stays
    big = tmp_path / "b.txt"
    big.write_text("lazy dog, quick fox. " * 20_000)
    with qtbot.waitSignal(w.busyChanged, timeout=120_000, check_params_cb=lambda busy: busy is False):
        w.add_documents([str(big)])
        qtbot.waitUntil(lambda: w.progress.value() > 0, timeout=60_000)
        w.cancel_add()
    assert results[-1].cancelled and len(w.store) == 45 * 200 - 1 + results[-1].entries
    w.lambda_spin.setValue(0.5)
    assert recalls[-1] == RecallSettings(k=16, lam=0.5, temperature=1.0) == w.recall
    # remember past runs
    w.remember_box.setChecked(True)
    session = Session(backend, memory=w.store)
    session.feed("dog fox")
    session.run()
    before = len(w.store)
    ran(qtbot, w.remember(session))
    assert len(w.store) == before + 6
    # another model: the store is switched off
    w.set_backend(load_backend(str(gpt2_dir)))
    assert w.store is None and stores[-1] is None
    assert not ran(qtbot, w.open_store(str(tmp_path / "m.sqlite"))) and "belongs to model" in errors[-1]
    assert len(MemoryStore.open(tmp_path / "m.sqlite", backend=backend)) == before + 6
