"""A store that fails to open at once (another model's) is reported even when the worker runs the job
before open_store returns: the window's error handler is connected before the job is submitted."""

from __future__ import annotations

from memviz.backends.registry import load_backend
from memviz.memory.store import MemoryStore
from memviz.ui.memory_controls import MemoryControls


class RunsAtOnce:
    """A job runner that runs each job inside submit: the fastest possible worker."""

    def submit(self, job) -> None:
        job.execute()


def test_a_quick_failure_reaches_the_handler(qtbot, tmp_path, lstm_dir, gpt2_dir):
    path = tmp_path / "lstm.sqlite"
    MemoryStore.open(path, backend=load_backend(str(lstm_dir)), create=True).close()
    controls = MemoryControls(RunsAtOnce())
    qtbot.addWidget(controls)
    controls.set_backend(load_backend(str(gpt2_dir)), open_default=False)
    reasons: list[str] = []
    controls.open_store(str(path), on_failed=reasons.append)
    qtbot.waitUntil(lambda: bool(reasons), timeout=5_000)
    assert "belongs to model" in reasons[0]
    assert controls.store is None
