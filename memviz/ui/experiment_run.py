"""An experiment run as a Job: its own backends loaded, the experiment run, results.csv / .json written.

It runs on a JobThread, never on the session's worker (the app's model may be stepping there): the
experiment loads its own copies of the models with `load_backend`, as `memviz experiment` does, and
fills in the same settings the command line does, so the two write the same files.

Progress comes from the experiment's own reporter (memviz.experiments.progress: every experiment
calls it between batches): JobProgress turns its calls into the job's progress signal, at most
every PROGRESS_EVERY_S, and raises Cancelled at the first call after Cancel was pressed. Nothing is
written until the experiment has finished, so a cancelled run leaves no folder behind; the figures
(Qt widgets, drawn on the UI thread) are saved by the window once the job is done.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from memviz.errors import MemvizError
from memviz.experiments.progress import Progress
from memviz.experiments.registry import Experiment
from memviz.experiments.result import (
    ExperimentResult,
    is_experiment_folder,
    record_run_settings,
    write_results,
)
from memviz.ui.jobs import Job

PROGRESS_EVERY_S = 0.1  # a run over 20,000 tokens reports each token: the bar needs ten a second


class Cancelled(MemvizError):
    """Cancel was pressed: the run stopped between two batches and wrote nothing."""


class JobProgress(Progress):
    """The experiments' progress reporter, feeding a Job's progress signal; stops a cancelled job."""

    def __init__(self, job: Job, every_s: float = PROGRESS_EVERY_S) -> None:
        super().__init__(quiet=True)
        self.job = job
        self.every_s = every_s
        self.notes: list[str] = []
        self._last = 0.0
        self._label = ""

    def __call__(self, label: str, done: int, total: int) -> None:
        self.check()
        now = time.monotonic()
        # at most every_s, but a new phase ("copy, distance 64") always shows: on a fast model the
        # whole of one would otherwise pass between two reports
        if done >= total or label != self._label or now - self._last >= self.every_s:
            self._last, self._label = now, label
            self.job.report(int(done), int(total), label)

    def note(self, message: str) -> None:
        self.check()
        self.notes.append(message)
        self.job.report(0, 0, message)

    def check(self) -> None:
        if self.job.cancelled:
            raise Cancelled("cancelled")

    def cancelled(self) -> bool:  # what experiments read as args.cancelled between steps
        return self.job.cancelled


@dataclass
class RunOutcome:
    result: ExperimentResult
    folder: Path
    written: list[Path]
    notes: list[str]


def new_results_folder(parent: Path, name: str, now: datetime | None = None) -> Path:
    """<parent>/<name>-<YYYYmmdd-HHMMSS>, with -2, -3 ... when that exists already. Not created."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    folder = Path(parent) / f"{name}-{stamp}"
    n = 2
    while folder.exists():
        folder = Path(parent) / f"{name}-{stamp}-{n}"
        n += 1
    return folder


def check_results_folder(folder: Path) -> None:
    """Refuse a folder write_results would refuse, before any work (without creating it)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MemvizError(f"{folder}: is a file; an experiment writes into a folder")
    if folder.is_dir() and any(folder.iterdir()) and not is_experiment_folder(folder):
        raise MemvizError(f"{folder}: holds files that are not a memviz experiment's")
    parent = folder if folder.is_dir() else folder.parent
    while not parent.exists() and parent != parent.parent:  # made with its parents at the end
        parent = parent.parent
    if not parent.is_dir():
        raise MemvizError(f"{folder}: {parent} is not a folder")


def run_experiment(spec: Experiment, args: argparse.Namespace, job: Job, load=None) -> RunOutcome:
    """What `memviz experiment` does up to the figures, on the job's thread; `args` as its parser
    reads them (args.text read already). Writes args.out only once the experiment has finished."""
    if load is None:
        from memviz.backends.registry import load_backend as load
    progress = args.progress = JobProgress(job)
    args.cancelled = progress.cancelled
    backends = []
    for i, model in enumerate(args.model):
        progress(f"loading {model}", i, len(args.model))
        backends.append(load(model, device=args.device, dtype=args.dtype))
    result = spec.run(backends, args)
    progress.check()  # the last batch ended after Cancel: still nothing written
    record_run_settings(result, args)
    folder = Path(args.out)
    folder.parent.mkdir(parents=True, exist_ok=True)
    written = write_results(result, folder)
    return RunOutcome(result, folder, written, progress.notes)
