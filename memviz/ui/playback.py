"""The playback controller: play, pause, step, scrub, read, generate, reset and replay, with no widgets.

It asks the session's worker (memviz.ui.worker) for steps, follows what the worker reports, and
moves the view's cursor. The window shows what it signals (the play button, messages, a new trace)
and hands it the user's settings (the text to read, the speed, whether the model is busy with
documents). Scrubbing moves the cursor only; replaying a trace moves the cursor through it on a
timer, and at its end play goes on with the model (when there is one).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from memviz.core.sampling import SamplingConfig
from memviz.core.trace import Trace
from memviz.panels.view_model import ViewModel
from memviz.ui.jobs import Job
from memviz.ui.pacing import REDRAW_INTERVAL_MS
from memviz.ui.worker import Worker


class Playback(QObject):
    loading_changed = Signal(object)  # the spec being loaded, or None once loaded or failed
    model_loaded = Signal(str, object)  # spec, ModelInfo (before its empty trace is shown)
    load_failed = Signal(str, str)  # spec, one-line reason
    trace_changed = Signal(object)  # a trace to show: a new model's, a reset's, a saved one
    stepped = Signal(int, float)  # the worker reported a new step (index, tokens per second)
    playing_changed = Signal(bool)  # what the play button shows
    waiting_changed = Signal(str)  # a job holds the model during a run (its label; "" when it goes on)
    run_ended = Signal(str)  # a worker run ended (why; "" = it simply finished, "paused")
    actions_changed = Signal()  # what can be done has changed (see `enabled`)
    message = Signal(str)
    reread_started = Signal(int)  # a re-read began: the steps taken over from the run before
    reread_finished = Signal(int, float, str)  # steps taken over, seconds, why it ended ("" = done)

    def __init__(self, worker: Worker, view: ViewModel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.view = view
        self.text: Callable[[], str] = lambda: ""  # the text to read (the window's editor)
        self.speed = 0.0  # tokens per second while playing and generating (0 = as fast as it goes)
        self.info = None  # ModelInfo of the loaded model; None when only a saved trace is shown
        self.model_spec: str | None = None
        self.trace: Trace | None = None
        self.loading: str | None = None
        self.running = ""  # what the worker is doing: "play", "generate" or ""
        self.waiting = ""  # what holds the model while a run waits ("" = nothing)
        self.busy = False  # documents are being added: no stepping meanwhile
        self.rate = 0.0
        self.known_steps = 0  # steps the worker has reported (the trace may already hold more)
        self.runs_finished = 0  # worker runs (play, generate) that have ended
        self._fed_text: str | None = None
        self._play_after_load = False
        self._reread_job: Job | None = None
        self._reread: tuple[int, float] | None = None  # a re-read going on: (steps taken over, start)
        self._reread_since = 0.0
        self.replay_timer = QTimer(self)  # plays back an existing trace by moving the cursor
        self.replay_timer.timeout.connect(self._replay_tick)
        w = worker
        w.loading.connect(self._on_loading)
        w.loaded.connect(self._on_loaded)
        w.load_failed.connect(self._on_load_failed)
        w.trace_reset.connect(self._set_trace)
        w.stepped.connect(self._on_stepped)
        w.warned.connect(self.message)
        w.stopped.connect(self._on_stopped)
        w.running_changed.connect(self._on_running_changed)
        w.failed.connect(self.message)
        w.run_suspended.connect(self._on_suspended)

    # -- what the window shows ----------------------------------------------------------------
    @property
    def playing(self) -> bool:
        """Whether play is on (the model running, or a replay), and not waiting for a job."""
        return (bool(self.running) or self.replay_timer.isActive()) and not self.waiting

    def enabled(self) -> dict[str, bool]:
        """Which transport actions can be used now."""
        has_model, has_trace = self.info is not None, self.trace is not None
        free = not self.busy  # adding documents uses the model: no stepping meanwhile
        return {
            "reset": has_model and free,
            "back": has_trace,
            "forward": has_trace and free,
            "play": has_trace and free,
            "generate": has_model and free,
        }

    def _show_playing(self, playing: bool | None = None) -> None:
        self.playing_changed.emit(self.playing if playing is None else playing)

    # -- settings from the window ---------------------------------------------------------------
    def set_speed(self, speed: float) -> None:
        self.speed = speed
        self.worker.speed_requested.emit(speed)
        if self.replay_timer.isActive():
            self.replay_timer.setInterval(self._replay_interval())

    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.actions_changed.emit()

    def set_memory(self, store, recall) -> None:
        """A new store or recall settings: the worker restarts the run with them."""
        self._fed_text = None
        self.worker.memory_requested.emit(store, recall)

    # -- models and traces ---------------------------------------------------------------------
    def load_model(self, spec: str, play: bool = False) -> None:
        """Ask the worker to load a model (bundled name, folder or Hugging Face id)."""
        self.replay_timer.stop()
        self.loading = spec
        self._play_after_load = play
        self.loading_changed.emit(spec)
        self.worker.load_requested.emit(spec)

    def open_trace(self, trace: Trace) -> None:
        """Show a saved trace without a model: scrub and replay it, nothing is recomputed."""
        self.set_playing(False)
        self.info = None
        self.model_spec = None
        self._set_trace(trace)

    @Slot(str)
    def _on_loading(self, spec: str) -> None:
        self.message.emit(f"loading {spec} ...")

    @Slot(object, object)
    def _on_loaded(self, trace: Trace, info) -> None:
        spec = self.loading or info.name
        self.loading = None
        self.info = info
        self.model_spec = spec
        self._fed_text = None
        self.rate = 0.0
        self.loading_changed.emit(None)
        self.model_loaded.emit(spec, info)
        self._set_trace(trace)
        self.message.emit(f"loaded {info.name} ({info.architecture.upper()}, {info.num_layers} layers)")
        if self._play_after_load:
            self._play_after_load = False
            self.set_playing(True)

    @Slot(str, str)
    def _on_load_failed(self, spec: str, reason: str) -> None:
        self.loading = None
        self._play_after_load = False
        self.loading_changed.emit(None)
        self.load_failed.emit(spec, reason)

    @Slot(object)
    def _set_trace(self, trace: Trace | None) -> None:
        self.trace = trace
        self.known_steps = 0 if trace is None else len(trace)
        self.trace_changed.emit(trace)
        n = 0 if trace is None else len(trace)
        self.view.update(cursor=n - 1, follow=True)
        self.actions_changed.emit()

    # -- what the worker reports ---------------------------------------------------------------
    @Slot(int, float)
    def _on_stepped(self, index: int, rate: float) -> None:
        self.rate = rate
        self.known_steps = max(self.known_steps, index + 1)
        self.stepped.emit(index, rate)

    def follow(self, index: int) -> bool:
        """Move the cursor to a new step if the view follows the run; True if it moved."""
        if self.view.state.follow and self.view.state.cursor != index:
            self.view.update(cursor=index)
            return True
        return False

    @Slot(str)
    def _on_running_changed(self, mode: str) -> None:
        self.running = mode
        if not mode:
            self.runs_finished += 1
        self._show_playing()
        self.actions_changed.emit()

    @Slot(str)
    def _on_stopped(self, reason: str) -> None:
        self._show_playing()
        if reason and reason != "paused":
            self.message.emit(reason)
        self.run_ended.emit(reason)
        self._reread_ended(reason)

    @Slot(str)
    def _on_suspended(self, label: str) -> None:
        self.waiting = label
        self.waiting_changed.emit(label)
        self._show_playing()
        self.message.emit(f"play paused while {label}" if label else "play resumed")

    # -- the user's requests -------------------------------------------------------------------
    def _ensure_fed(self) -> bool:
        """Queue the text if it has not been read yet. False when there is nothing to read."""
        if self.info is None:
            return False
        text = self.text()
        if self._fed_text is None:
            if not text.strip():
                if self.trace is None or not len(self.trace):
                    self.message.emit("type or open a text first")
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
                self.message.emit("the text was edited: Reset (Home) reads it again from the start")
        return True

    def step_forward(self) -> None:
        """Next token of the trace; at its end, ask the worker to read (or generate) one more."""
        if self.trace is None:
            return
        T = self.known_steps  # not len(trace): a step the worker has not yet reported is not shown yet
        cursor = self.view.state.cursor
        if cursor < T - 1:
            self.view.update(cursor=cursor + 1, follow=cursor + 1 == T - 1)
            return
        if self.info is None:
            self.message.emit("end of the saved trace")
            return
        self.view.update(follow=True)
        if self.running:
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
        self.view.update(cursor=index, follow=index == self.known_steps - 1)

    def set_playing(self, playing: bool) -> None:
        """Play: replay the trace from the cursor if scrubbed back, then read the rest of the text."""
        if not playing:
            self.replay_timer.stop()
            if self.running:
                self.worker.pause_requested.emit()
            self._show_playing(False)
            return
        if self.trace is None:
            self._show_playing(False)
            return
        self._show_playing(True)
        if self.view.state.cursor < self.known_steps - 1:
            self.view.update(follow=False)
            self.replay_timer.start(self._replay_interval())
            return
        self._play_model()

    def toggle_play(self) -> None:
        self.set_playing(not (self.running or self.replay_timer.isActive()))

    def _play_model(self) -> None:
        if self.info is None:
            self._show_playing(False)
            return
        self.view.update(follow=True)
        if not self._ensure_fed():
            self._show_playing(False)
            return
        self.worker.play_requested.emit(self.speed)

    def _replay_interval(self) -> int:
        return REDRAW_INTERVAL_MS if self.speed <= 0 else max(1, int(1000 / self.speed))

    def _replay_tick(self) -> None:
        T = 0 if self.trace is None else self.known_steps
        cursor = self.view.state.cursor
        if cursor < T - 1:
            self.view.update(cursor=cursor + 1)
            return
        self.replay_timer.stop()
        if self.info is not None:
            self._play_model()
        else:
            self._show_playing(False)

    def reset(self) -> None:
        """Forget the run and queue the text from the start (played on Space or Step)."""
        if self.info is None:
            return
        self.replay_timer.stop()
        self._fed_text = None
        self.rate = 0.0
        self.worker.reset_requested.emit("")
        self._show_playing(False)

    def reread(self, from_step: int = 0, prepare: Callable[[object], None] | None = None) -> None:
        """Read the text read so far again, at once (the model was changed: Run -> Intervene), from
        `from_step` on: the steps before it are taken over from the run shown, not recomputed
        (Session.resume_from; from 0, or where it cannot, the text is read from the start).
        `prepare(session)` runs on the worker first (it hands the session its interventions). The
        re-read plays as fast as it goes (a recomputation, not a show); `reread_started` says how
        many steps were taken over, `reread_finished` when the rest has been read."""
        if self.info is None:
            return
        text = self._fed_text if self._fed_text is not None else self.text()
        self.replay_timer.stop()
        self.rate = 0.0
        self._fed_text = text if text.strip() else None
        self.worker.pause_requested.emit()  # a run going on stops before the session changes
        fed = self._fed_text or ""
        self._reread_since = time.perf_counter()  # the re-read's time counts the restore too
        job = Job(lambda _job: self._resume(from_step, prepare, fed), "re-reading")
        job.finished.connect(self._on_resumed)
        job.failed.connect(self._on_resume_failed)
        self._reread_job = job  # kept until it has run (the worker holds it only through a signal)
        self.worker.submit(job)

    def _resume(self, from_step: int, prepare, text: str) -> int:
        """On the worker's thread: the new run, its steps before `from_step` taken over where it can."""
        session = self.worker.session
        if session is None:
            return 0
        if prepare is not None:
            prepare(session)
        taken = session.resume_from(session.trace, from_step, text) if text else 0
        if not text:
            session.reset()
        self.worker.trace_reset.emit(session.trace)  # as the worker's own reset does
        return taken

    @Slot(object)
    def _on_resumed(self, taken: object) -> None:
        self._reread_job = None
        self._reread = (int(taken), self._reread_since)
        self.reread_started.emit(int(taken))
        if self._fed_text is None:  # no text: the new run starts empty, nothing to read
            self._reread_ended("")
            return
        self.view.update(follow=True)
        self.worker.play_requested.emit(0.0)

    @Slot(str)
    def _on_resume_failed(self, reason: str) -> None:
        self._reread_job = None
        self._reread = None
        self.message.emit(f"re-read failed: {reason}")

    @Slot(str)
    def _reread_ended(self, reason: str) -> None:
        """The re-read run ended: how long it took (the steps taken over cost next to nothing)."""
        if self._reread is None:
            return
        taken, started = self._reread
        self._reread = None
        self.reread_finished.emit(taken, time.perf_counter() - started, reason)

    def generate(self, n: int, sampling: SamplingConfig) -> bool:
        """Generate n tokens after what has been read. False when there is no model or no text."""
        if self.info is None:
            self.message.emit("load a model to generate")
            return False
        if not self._ensure_fed():
            return False
        self.replay_timer.stop()
        self.view.update(follow=True)
        self.worker.generate_requested.emit(n, sampling, self.speed)
        return True

    def text_replaced(self) -> None:
        """A new text (a file opened): what was read no longer matches it."""
        if self.info is not None and self._fed_text is not None:
            self.reset()

    def play_text(self) -> None:
        """Play from the editor (Ctrl+Enter): an edited text is read again from the start."""
        if (
            self.info is not None
            and self._fed_text is not None
            and not self.text().startswith(self._fed_text)
        ):
            self.reset()
        self.set_playing(True)

    def stop(self) -> None:
        self.replay_timer.stop()
