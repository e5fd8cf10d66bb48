"""Writing an animation from the app: one frame per timer tick on the UI thread (widgets live
there), a progress dialog with Cancel, then the file encoded as a Job on a JobThread
(memviz.ui.jobs), so the window keeps answering and Cancel works at any moment.

Split out of export_actions.py (issue 14); ExportActions makes the AnimationJob and hands it here.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, QTimer, Slot
from PySide6.QtWidgets import QProgressDialog, QWidget

from memviz.errors import MemvizError
from memviz.ui.jobs import Job, JobThread


class AnimationWriter(QObject):
    """At most one animation being written: its job, its progress dialog, its encoder."""

    def __init__(
        self,
        window: QWidget,
        say: Callable[[str], None],
        fail: Callable[[str, Exception], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.window = window  # the parent of the progress dialog
        self._say = say
        self._fail = fail
        self.job = None  # the animation being written
        self.progress: QProgressDialog | None = None
        self._jobs: JobThread | None = None  # encodes animations (model-free), started when needed
        self._encoding: Job | None = None
        self._timer: QTimer | None = None  # renders the frames of an animation, one per tick

    def start(self, make_job: Callable[[], object]):
        """Begin writing the job `make_job()` gives; returns it. Frames come one per timer tick;
        the dialog shows progress."""
        if self.job is not None:
            raise MemvizError("an animation is already being written")
        job = make_job()
        self.job = job
        self.progress = QProgressDialog(
            f"Rendering {job.total} frames...", "Cancel", 0, job.total + 1, self.window
        )
        self.progress.setWindowTitle("Export animation")
        self.progress.setWindowModality(Qt.WindowModality.WindowModal)
        self.progress.setMinimumDuration(300)
        self.progress.canceled.connect(self.cancel)
        self._timer = QTimer(self)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        return job

    def _tick(self) -> None:
        job = self.job
        if job is None:
            return
        try:
            more = job.step()
        except Exception as exc:  # noqa: BLE001 (shown to the user, never a crash)
            self.cancel()
            self._fail("Could not export the animation", exc)
            return
        if self.progress is not None:
            self.progress.setValue(job.done)
        if more:
            return
        self._timer.stop()
        job._close_renderer()  # widgets: on this thread
        if self.progress is not None:
            self.progress.setLabelText("Encoding...")
        sink = job.sink
        encoding = Job(lambda _job: sink.close(), "encoding the animation…")
        encoding.finished.connect(self._encoding_finished)
        encoding.failed.connect(self._encoding_failed)
        self._encoding = encoding
        if self._jobs is None:
            self._jobs = JobThread("memviz-export", self)
        self._jobs.submit(encoding)

    def _end(self):
        """The animation job and its dialog are done with; returns the job (None if cancelled)."""
        job, self.job = self.job, None
        self._encoding = None
        if self.progress is not None:
            self.progress.canceled.disconnect(self.cancel)
            self.progress.setValue(self.progress.maximum())
            self.progress.close()
            self.progress = None
        return job

    @Slot(object)
    def _encoding_finished(self, _result) -> None:
        if self.sender() is not self._encoding:
            return  # cancelled meanwhile
        job = self._end()
        if job is not None:
            self._say(f"exported {job.out} ({job.total} frames)")

    @Slot(str)
    def _encoding_failed(self, reason: str) -> None:
        if self.sender() is not self._encoding:
            return  # cancelled meanwhile
        job = self._end()
        if job is not None:
            job.out.unlink(missing_ok=True)
            self._fail("Could not export the animation", MemvizError(reason))

    def shutdown(self) -> None:
        """The window closes: stop an animation being written and wait for the encoder."""
        self.cancel()
        if self._jobs is not None:
            self._jobs.stop()

    def cancel(self) -> None:
        job, self.job = self.job, None
        self._encoding = None  # an encoder still running ends unheard
        if self._timer is not None:
            self._timer.stop()
        if job is not None:
            job.cancel()
            self._say("animation cancelled")
        if self.progress is not None:
            self.progress.close()
            self.progress = None
