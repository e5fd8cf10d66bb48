"""Run -> Read past the context window: the app's `--slide`.

A transformer's run stops when its context window is full. With this on, it reads on in windows
that slide (memviz.core.session: the cache keeps its last window - stride tokens, re-encoded from
position 0, stride = window // 2), and the panels mark where each window begins. Turning it on or
off reads the text read so far again from the start (the windows change every step past the first
window), on the worker's thread like an intervention (Playback.reread). A new model starts with it
off; it stays on through resets.
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QWidget

from memviz.ui.playback import Playback


def can_slide(info) -> bool:
    """A model with a context window to slide (a transformer)."""
    return info is not None and info.kind == "transformer" and bool(info.context_size)


class SlideAction(QObject):
    def __init__(self, window: QWidget, playback: Playback) -> None:
        super().__init__(window)
        self.playback = playback
        self.action = QAction("Read past the context window", window)
        self.action.setCheckable(True)
        self.action.setToolTip(
            "A transformer reads on when its context window is full, in windows that slide by half "
            "a window (memviz trace --slide); each step sees only its window, and the panels mark "
            "where a window begins. Changing it reads the text again."
        )
        self.window = window
        self.action.toggled.connect(self._toggled)
        playback.model_loaded.connect(self._model_loaded)
        playback.actions_changed.connect(self.update_action)
        self.update_action()

    def update_action(self) -> None:
        info = self.playback.info
        self.action.setEnabled(can_slide(info))
        if info is not None and info.context_size:
            self.action.setText(f"Read past the context window ({info.context_size} tokens)")

    def _model_loaded(self, _spec: str, _info) -> None:
        self.action.blockSignals(True)  # a new Session starts without slide
        self.action.setChecked(False)
        self.action.blockSignals(False)
        self.update_action()

    def _toggled(self, on: bool) -> None:
        if not can_slide(self.playback.info):
            return
        slide = True if on else None

        def apply(session) -> None:  # on the worker's thread, before the new run starts
            session.slide = slide

        label = "reading past the context window" if on else "reading within the context window"
        intervene = getattr(self.window, "intervene_actions", None)
        if intervene is not None:  # it reports the end of every re-read in the status bar
            intervene.expect_reread(label)
        self.playback.reread(0, apply)
        self.playback.message.emit(f"{label}: reading the text again from step 0 ...")
