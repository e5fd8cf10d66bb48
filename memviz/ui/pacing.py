"""Redraw pacing: every request until the next frame makes one redraw, and new steps from a
running model wait at least as long as the last frame took, so drawing takes at most about half
of the UI thread's time however fast the model runs and however heavy the panels are."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer

REDRAW_INTERVAL_MS = 16  # at most ~60 redraws a second, however fast the model steps
MAX_REDRAW_INTERVAL_MS = 250  # however slow a frame, a running model is redrawn at least 4 times a second


class RedrawPacer(QObject):
    def __init__(self, draw: Callable[[], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(REDRAW_INTERVAL_MS)
        self.timer.timeout.connect(draw)
        self.from_model = False  # set while a new step asks for the redraw
        self._frame_cost_ms = 0.0
        self._last_frame_start = 0.0

    def schedule(self) -> None:
        """A user's action is drawn within one 60 Hz frame; a new step waits for the frame budget."""
        if self.from_model:
            elapsed_ms = 1000 * (time.perf_counter() - self._last_frame_start)
            period = min(MAX_REDRAW_INTERVAL_MS, 2 * self._frame_cost_ms)  # draw at most half the time
            delay = max(REDRAW_INTERVAL_MS, int(period - elapsed_ms))
            if not self.timer.isActive():
                self.timer.start(delay)
        elif not self.timer.isActive() or self.timer.remainingTime() > REDRAW_INTERVAL_MS:
            self.timer.start(REDRAW_INTERVAL_MS)

    def frame_started(self) -> None:
        """Call at the start of a redraw: the frame's cost is measured after its paint events."""
        self.timer.stop()
        self._last_frame_start = time.perf_counter()
        QTimer.singleShot(0, self, self._frame_painted)

    def _frame_painted(self) -> None:
        cost = 1000 * (time.perf_counter() - self._last_frame_start)
        self._frame_cost_ms = 0.5 * self._frame_cost_ms + 0.5 * cost

    def stop(self) -> None:
        self.timer.stop()
