"""Run -> Intervene... / Clear interventions: the same text read again with the model changed.

Intervening keeps the run shown as the *baseline* (its Trace), hands the specs to the session on
the worker (the one thread that owns the model) and reads the same text again from the start: the
simplest correct re-run (re-running only from the first changed step is a later stage). Every trace
shown meanwhile carries the baseline as `trace.baseline`, for the compare panel. Clearing the
interventions reads the text again without them and forgets the baseline; so does a new model.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QInputDialog, QLineEdit, QWidget

from memviz.core import interventions as specs_module
from memviz.core.trace import Trace
from memviz.errors import MemvizError
from memviz.ui.jobs import Job
from memviz.ui.playback import Playback


def _split(text: str | Sequence[str]) -> list[str]:
    """Specs from the dialog's line (separated by spaces, commas or semicolons) or a list."""
    if not isinstance(text, str):
        return [str(t) for t in text]
    return [part for part in text.replace(";", " ").replace(",", " ").split() if part]


class InterveneActions(QObject):
    def __init__(self, window: QWidget, playback: Playback) -> None:
        super().__init__(window)
        self.window = window
        self.playback = playback
        self.baseline: Trace | None = None
        self.active: tuple = ()  # the interventions the session runs with now
        self.last_error = ""
        self.intervene_action = QAction("Intervene...", window)
        self.intervene_action.setToolTip(
            "Change the model (e.g. head:1.0=zero) and read the same text again; the run before is "
            "kept as the baseline (the Compare with baseline panel)"
        )
        self.intervene_action.triggered.connect(self.intervene_dialog)
        self.clear_action = QAction("Clear interventions", window)
        self.clear_action.triggered.connect(self.clear)
        playback.model_loaded.connect(self._forget)
        playback.actions_changed.connect(self.update_actions)
        self.update_actions()

    def update_actions(self) -> None:
        self.intervene_action.setEnabled(self.playback.info is not None)
        self.clear_action.setEnabled(bool(self.active) or self.baseline is not None)

    def attach(self, trace: Trace | None) -> None:
        """Give a trace about to be shown the baseline (a saved trace opened without a model: none)."""
        if trace is not None and trace is not self.baseline:
            trace.baseline = self.baseline if self.playback.info is not None else None

    # -- the user's requests ---------------------------------------------------------------------
    def intervene_dialog(self) -> None:
        text, ok = QInputDialog.getText(
            self.window,
            "Intervene",
            f"Interventions ({specs_module.USAGE}; several: separate by spaces):",
            QLineEdit.EchoMode.Normal,
            " ".join(s.spec for s in self.active),
        )
        if ok and text.strip():
            self.intervene(text)

    def intervene(self, text: str | Sequence[str]) -> bool:
        """Check the specs, keep the run as the baseline and read the text again with them. A bad
        spec is one message and nothing runs; False then."""
        info = self.playback.info
        if info is None:
            return self._refuse("load a model to intervene")
        try:
            specs = specs_module.parse_all(_split(text))
            specs_module.check_for_model(specs, info)
        except MemvizError as exc:
            return self._refuse(str(exc))
        if not specs:
            return self._refuse("no intervention given")
        if self.baseline is None:  # intervening again compares with the plain run, not the last one
            trace = self.playback.trace
            if trace is None or not len(trace):
                return self._refuse("read some text first: the run now is the baseline")
            self.baseline = trace
        return self._rerun(specs)

    def clear(self) -> None:
        """Back to a plain run: no interventions, no baseline, the text read again."""
        had = bool(self.active)
        self.baseline = None
        if had:
            self._rerun(())
        self.update_actions()

    # -- helpers ---------------------------------------------------------------------------------
    def _refuse(self, reason: str) -> bool:
        self.last_error = reason
        self.playback.message.emit(f"intervene: {reason}")
        return False

    def _rerun(self, specs: tuple) -> bool:
        session_specs = tuple(specs)

        def apply(_job: Job) -> None:  # on the worker's thread, before the reset queued after it
            session = self.playback.worker.session
            if session is not None:
                # Session has no public setter yet: its own check-and-hand-to-the-backend method
                session.set_interventions(session_specs)

        self.active = session_specs
        self.playback.worker.submit(Job(apply, "setting interventions"))
        self.playback.reread()
        described = specs_module.describe(session_specs) or "none"
        self.playback.message.emit(f"interventions: {described}: reading the text again")
        self.update_actions()
        return True

    @Slot(str, object)
    def _forget(self, _spec: str, _info) -> None:
        """A new model: its session starts plain, the old baseline means nothing for it."""
        self.baseline = None
        self.active = ()
        self.update_actions()
