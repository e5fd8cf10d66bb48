"""The playback controller without a window: a real worker thread, a real tiny LSTM, a real store.

It loads, plays, steps, scrubs, replays and generates; and a document added while it plays is
added on the same worker between two steps, the run pausing visibly and going on afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from memviz.backends.registry import load_backend  # noqa: E402
from memviz.core.sampling import SamplingConfig  # noqa: E402
from memviz.core.session import Session  # noqa: E402
from memviz.core.view import ViewState  # noqa: E402
from memviz.panels.view_model import ViewModel  # noqa: E402
from memviz.ui.playback import Playback  # noqa: E402
from memviz.ui.worker import WorkerThread  # noqa: E402

TEXT = "def f(x): return x + 1\n"


class Seen:
    """What the controller signalled, in order."""

    def __init__(self, playback: Playback) -> None:
        self.messages: list[str] = []
        self.playing: list[bool] = []
        self.waiting: list[str] = []
        self.traces: list = []
        playback.message.connect(self.messages.append)
        playback.playing_changed.connect(self.playing.append)
        playback.waiting_changed.connect(self.waiting.append)
        playback.trace_changed.connect(self.traces.append)
        playback.stepped.connect(lambda index, _rate: playback.follow(index))  # what the window does


@pytest.fixture
def playback(qtbot):
    owner = WorkerThread()
    controller = Playback(owner.worker, ViewModel(ViewState()))
    yield controller
    controller.stop()
    owner.stop()


def loaded(qtbot, playback: Playback, folder, text: str = TEXT) -> Seen:
    seen = Seen(playback)
    playback.text = lambda: text
    playback.set_speed(0.0)
    playback.load_model(str(folder))
    qtbot.waitUntil(lambda: playback.info is not None, timeout=60_000)
    return seen


def uninterrupted(folder, text: str) -> Session:
    session = Session(load_backend(str(folder)), sampling=SamplingConfig(temperature=0.0))
    session.feed(text)
    session.run()
    return session


def play_to_end(qtbot, playback: Playback, timeout: int = 60_000) -> None:
    before = playback.runs_finished
    playback.set_playing(True)
    qtbot.waitUntil(lambda: playback.runs_finished > before, timeout=timeout)


def test_play_step_scrub_replay_and_generate(qtbot, playback, lstm_dir):
    seen = loaded(qtbot, playback, lstm_dir)
    assert playback.loading is None and playback.info.architecture == "lstm"
    assert len(seen.traces) == 1 and len(playback.trace) == 0
    assert playback.enabled() == {
        "reset": True,
        "back": True,
        "forward": True,
        "play": True,
        "generate": True,
    }

    # Two steps by hand, then play the rest.
    for n in (1, 2):
        playback.step_forward()
        qtbot.waitUntil(lambda n=n: playback.known_steps == n, timeout=10_000)
    play_to_end(qtbot, playback)
    trace = playback.trace
    assert trace.token_text == list(TEXT)
    expected = uninterrupted(lstm_dir, TEXT).trace
    np.testing.assert_allclose(trace.array("hidden"), expected.array("hidden"), atol=1e-6)
    assert playback.view.state.cursor == len(TEXT) - 1 and playback.view.state.follow
    assert seen.playing[-1] is False and not playback.playing

    # Scrubbing moves the cursor only.
    playback.step_back()
    playback.step_back()
    assert playback.view.state.cursor == len(TEXT) - 3 and not playback.view.state.follow
    playback.scrub_to(1)
    assert playback.view.state.cursor == 1 and len(trace) == len(TEXT)

    # Replay from the cursor to the end; then play asks the model, which has nothing left to read.
    playback.set_speed(200.0)
    playback.set_playing(True)
    assert seen.playing[-1] is True and playback.replay_timer.isActive()
    qtbot.waitUntil(lambda: playback.view.state.cursor == len(TEXT) - 1, timeout=5_000)
    qtbot.waitUntil(lambda: any("end of the text" in m for m in seen.messages), timeout=5_000)
    assert len(trace) == len(TEXT)

    # Generate three tokens, greedy: the same as generating after an uninterrupted run.
    playback.set_speed(0.0)
    before = playback.runs_finished
    assert playback.generate(3, SamplingConfig(temperature=0.0))
    qtbot.waitUntil(lambda: playback.runs_finished > before, timeout=20_000)
    session = uninterrupted(lstm_dir, TEXT)
    session.generate(3)
    session.run()
    assert trace.token_ids == session.trace.token_ids and trace.generated[-3:] == [True] * 3

    # Reset: a new, empty trace; the text is read again on play.
    playback.reset()
    qtbot.waitUntil(lambda: playback.trace is not trace, timeout=5_000)
    assert len(playback.trace) == 0 and len(seen.traces) == 2
    playback.set_busy(True)  # documents being added: no stepping meanwhile
    assert playback.enabled() == {
        "reset": False,
        "back": True,
        "forward": False,
        "play": False,
        "generate": False,
    }


def test_a_saved_trace_replays_without_a_model(qtbot, playback, lstm_dir):
    seen = Seen(playback)
    trace = uninterrupted(lstm_dir, "hello").trace
    playback.open_trace(trace)
    assert playback.info is None and playback.view.state.cursor == 4
    assert playback.enabled()["reset"] is False and playback.enabled()["play"] is True
    playback.step_forward()
    assert seen.messages[-1] == "end of the saved trace"
    playback.scrub_to(0)
    playback.set_speed(100.0)
    playback.set_playing(True)
    qtbot.waitUntil(lambda: playback.view.state.cursor == 4, timeout=5_000)
    qtbot.waitUntil(lambda: seen.playing[-1] is False, timeout=5_000)


def test_adding_a_document_while_playing_pauses_the_run_and_both_finish(qtbot, playback, lstm_dir, tmp_path):
    from memviz.memory.store import MemoryStore
    from memviz.ui.memory_controls import MemoryControls

    text = "The quick brown fox jumps over the lazy dog. " * 3
    seen = loaded(qtbot, playback, lstm_dir, text=text)
    controls = MemoryControls(playback.worker)  # the same worker: the one owner of the model
    qtbot.addWidget(controls)
    controls.busyChanged.connect(playback.set_busy)
    added = []
    controls.addFinished.connect(added.append)
    controls.set_backend(playback.worker.session.backend)
    job = controls.open_store(str(tmp_path / "m.sqlite"), create=True)
    qtbot.waitUntil(lambda: controls.store is not None, timeout=30_000)
    assert job.error is None
    doc = tmp_path / "doc.txt"
    doc.write_text("lazy dog, quick fox. " * 400)

    playback.set_speed(40.0)  # slow enough that the run is still going when the document comes
    playback.set_playing(True)
    qtbot.waitUntil(lambda: playback.known_steps >= 5, timeout=20_000)
    with qtbot.waitSignal(controls.busyChanged, timeout=60_000, check_params_cb=lambda busy: not busy):
        controls.add_documents([str(doc)])
    assert playback.running == "play"  # the run was not ended by the document...
    qtbot.waitUntil(lambda: playback.runs_finished == 1, timeout=60_000)

    # ... it paused visibly while the document was added, and went on afterwards
    assert seen.waiting == ["adding documents\u2026", ""]
    assert "play paused while adding documents\u2026" in seen.messages and "play resumed" in seen.messages
    i = seen.playing.index(False)
    assert True in seen.playing[i:] and seen.playing[-1] is False

    # The run's steps are those of an uninterrupted run.
    trace, expected = playback.trace, uninterrupted(lstm_dir, text).trace
    assert trace.token_text == list(text)
    for name in ("hidden", "cell", "gates"):
        np.testing.assert_allclose(trace.array(name), expected.array(name), atol=1e-6)

    # The store holds the document's entries: one per token but the last, keyed as the model reads it.
    entries = len("lazy dog, quick fox. " * 400) - 1
    assert added[-1].entries == entries and not added[-1].cancelled
    controls.store.close()
    store = MemoryStore.open(tmp_path / "m.sqlite", backend=load_backend(str(lstm_dir)))
    assert len(store) == entries
    store.close()
