"""File -> Compare with... / Clear comparison, and what the panels show while two runs are compared.

A comparison has two runs over the same tokens: A, the run compared with (a saved trace or session
picked here, or an intervention's baseline, Run -> Intervene...), and B, the run on screen. Both
ways end the same: B carries A as `trace.baseline`. A saved trace is loaded on a job thread (a large
file takes a moment) and refused in one line when its tokens are not B's (two models sharing a
tokenizer are fine), as `memviz compare` refuses them.

While a comparison is active the View toolbar and menu choose what the panels are fed
(ViewState.compare): A, B, or B - A (memviz.core.trace_diff.TraceDiff), and the diff strip shows
B - A of log p of each next token under the token strip. A new run (a reset, another model, another
trace opened) ends a comparison picked here; clearing one ends it too, and the panels show the run
as before.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMainWindow

from memviz.core.trace import Trace
from memviz.core.trace_diff import NamedRun, TraceDiff, check_comparable, same_model
from memviz.core.view import COMPARE_MODES, ViewState
from memviz.panels.base import Panel
from memviz.panels.compare_modes import fed_trace, panel_class_for
from memviz.panels.compare_strip import shared_steps
from memviz.ui.jobs import Job, JobThread

MODE_LABELS = {
    "b": ("Show B (this run)", "Ctrl+Alt+B", "The panels show the run on screen (B)"),
    "a": ("Show A (compared with)", "Ctrl+Alt+A", "The panels show the run it is compared with (A)"),
    "diff": ("Show B \u2212 A", "Ctrl+Alt+D", "The panels show B's numbers minus A's, coloured around 0"),
}


def load_for_comparison(path: str | Path) -> Trace:
    """A saved trace or session file (a session is a trace with the view inside): the run to compare with."""
    return Trace.load(path)


class CompareActions(QObject):
    """The comparison's state and actions; the window asks it what each panel is fed (`fed`, `variant`)."""

    def __init__(self, window: QMainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.view = window.view
        self.picked: Trace | None = None  # A, picked with Compare with... (None: none, or an intervention's)
        self.picked_for: Trace | None = None  # the B it was picked for
        self.picked_name = ""
        self.last_error = ""
        self.jobs = JobThread("memviz-compare", self)
        self.job: Job | None = None
        self._difference: TraceDiff | None = None
        self._named: NamedRun | None = None  # A as the panels are fed it
        self._mode = self.view.state.compare
        self._quiet = False  # the window is showing a trace: no re-feeding from a view change meanwhile
        self.compare_action = QAction("Compare with...", window)
        self.compare_action.setToolTip(
            "Compare the run on screen (B) with a saved trace over the same tokens (A): a diff strip under "
            "the tokens, and the panels can show A, B or B \u2212 A"
        )
        self.compare_action.triggered.connect(self.compare_dialog)
        self.clear_action = QAction("Clear comparison", window)
        self.clear_action.triggered.connect(self.clear)
        self.mode_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        group.setExclusive(True)
        for mode in COMPARE_MODES:
            label, shortcut, tip = MODE_LABELS[mode]
            action = QAction(label, window, checkable=True)
            action.setShortcut(QKeySequence(shortcut))
            action.setToolTip(f"{tip} ({shortcut})")
            action.triggered.connect(lambda _checked=False, m=mode: self.set_mode(m))
            group.addAction(action)
            self.mode_actions[mode] = action
        self.view.changed.connect(self._on_view_changed)
        self.update_actions()

    # -- what is compared ------------------------------------------------------------------------------
    @property
    def trace(self) -> Trace | None:
        return self.window.trace

    def active(self, trace: Trace | None = None) -> bool:
        """Whether the run on screen is compared with another (it reads the baseline's tokens so far)."""
        trace = self.trace if trace is None else trace
        baseline = getattr(trace, "baseline", None)
        return baseline is not None and len(baseline) > 0 and shared_steps(trace) == len(trace)

    @property
    def mode(self) -> str:
        """What the panels are fed now: "b" without a comparison."""
        return self.view.state.compare if self.active() else "b"

    def difference(self, trace: Trace | None = None) -> TraceDiff | None:
        """B - A of the run on screen and its baseline (one object per pair: it caches its rows)."""
        trace = self.trace if trace is None else trace
        if not self.active(trace):
            return None
        d = self._difference
        if d is None or d.b is not trace or d.a is not trace.baseline:
            d = self._difference = TraceDiff(trace.baseline, trace)
        return d

    def names(self, trace: Trace | None = None) -> tuple[str, str]:
        trace = self.trace if trace is None else trace
        baseline = getattr(trace, "baseline", None)
        a = baseline.model.get("name", "A") if baseline is not None else "A"
        return (str(a), str(trace.model.get("name", "B")) if trace is not None else "B")

    # -- what the window asks ----------------------------------------------------------------------------
    def attach(self, trace: Trace | None) -> None:
        """A trace about to be shown: the run picked to compare with goes with the B it was picked for; a
        new run ends that comparison. The mode falls back to B where there is nothing to compare."""
        self._quiet = True
        try:
            if self.picked is not None:
                if trace is self.picked_for:
                    trace.baseline = self.picked
                else:
                    self._drop_picked()
                    self.window.message("comparison ended: a new run is shown")
            if not self.active(trace) and self.view.state.compare != "b":
                self.view.update(compare="b")
            self._mode = self.view.state.compare
        finally:
            self._quiet = False
        self.window.diff_strip.set_trace(trace if self.active(trace) else None)
        self.update_actions(trace)

    def variant(self, cls: type[Panel]) -> type[Panel]:
        """The class that shows `cls`'s place in the mode now (a B - A variant, a placeholder)."""
        trace = self.trace
        mode = self.mode
        if mode != "diff" or trace is None:
            return panel_class_for(cls, "b")
        return panel_class_for(cls, mode, same_model(trace.baseline, trace), self.names(trace))

    def fed(self, name: str, trace: Trace | None):
        """What the panel named `name` draws: B, A (named "… (A)") or B - A."""
        mode = self.mode if trace is self.trace else "b"
        fed = fed_trace(name, mode, trace, self.difference(trace) if mode == "diff" else None)
        if mode == "a" and fed is not trace and fed is not None:
            if self._named is None or self._named.run is not fed:
                self._named = NamedRun(fed, "A")
            return self._named
        return fed

    # -- the user's requests ------------------------------------------------------------------------------
    def set_mode(self, mode: str) -> bool:
        """Show A, B or B - A in the panels; False (one message) without a comparison."""
        if mode not in COMPARE_MODES:
            return self._refuse(f"unknown view {mode!r} (one of {', '.join(COMPARE_MODES)})")
        if mode != "b" and not self.active():
            self.update_actions()
            return self._refuse("nothing to compare with: File -> Compare with... or Run -> Intervene...")
        self.view.update(compare=mode)
        return True

    def compare_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.window,
            "Compare with a saved trace",
            str(Path.home()),
            "memviz traces and sessions (*.memviz)",
        )
        if path:
            self.compare_with(path)

    def compare_with(self, source: str | Path | Trace) -> Job | None:
        """Load a saved trace (on a job thread) and compare the run on screen with it; a Trace is
        compared at once. Returns the loading job (None when refused or when given a Trace)."""
        if self.trace is None or not len(self.trace):
            self._refuse("nothing on screen to compare: read a text or open a trace first")
            return None
        if isinstance(source, Trace):
            self._picked(source, "the trace given", self.trace)
            return None
        if self.job is not None and not self.job.ended:
            self._refuse("still loading the last trace to compare with")
            return None
        path = Path(source)
        b = self.trace
        job = self.job = Job(lambda _job: load_for_comparison(path), f"loading {path.name}")
        job.finished.connect(self._on_loaded)
        job.failed.connect(self._on_failed)
        self._pending = (path.name, b)
        self.window.message(f"loading {path} to compare with ...")
        self.jobs.submit(job)
        return job

    def clear(self) -> None:
        """No comparison: the panels show the run on screen as before."""
        trace = self.trace
        had = self.active()
        self._drop_picked()
        intervene = getattr(self.window, "intervene_actions", None)
        if intervene is not None and trace is not None and trace.baseline is intervene.baseline:
            intervene.baseline = None  # the interventions stay on; only the comparison ends
        if trace is not None:
            trace.baseline = None
        if had:
            self.window.message("comparison cleared")
        self.view.update(compare="b")
        self.refeed()

    # -- helpers ---------------------------------------------------------------------------------------------
    @Slot(object)
    def _on_loaded(self, a: Trace) -> None:
        name, b = self._pending
        if b is not self.trace:
            self._refuse(f"{name}: the run changed while it was loading; pick it again")
            return
        self._picked(a, name, b)

    @Slot(str)
    def _on_failed(self, reason: str) -> None:
        self._refuse(reason)

    def _picked(self, a: Trace, name: str, b: Trace) -> bool:
        reason = check_comparable(a, b, (name, "the run on screen"))
        if reason is not None:
            return self._refuse(reason)
        self.picked, self.picked_for, self.picked_name = a, b, name
        b.baseline = a
        how = "" if same_model(a, b) else " (another model: the panels show A or B; the strip compares)"
        self.window.message(f"comparing with {name}: A = {name}, B = the run on screen{how}")
        self.last_error = ""
        self.refeed()
        return True

    def _drop_picked(self) -> None:
        if (
            self.picked is not None
            and self.picked_for is not None
            and self.picked_for.baseline is self.picked
        ):
            self.picked_for.baseline = None
        self.picked = self.picked_for = None
        self.picked_name = ""
        self._difference = None
        self._named = None

    def _refuse(self, reason: str) -> bool:
        self.last_error = reason
        self.window.message(f"compare: {reason}")
        return False

    def _on_view_changed(self, state: ViewState) -> None:
        if state.compare != self._mode:
            self._mode = state.compare
            if not self._quiet:
                self.refeed()
        self._check_actions()

    def refeed(self) -> None:
        """Feed every panel what the mode asks (the docks stay; a class may change in its place)."""
        window = self.window
        trace = window.trace
        if not self.active(trace) and self.view.state.compare != "b":
            self._quiet = True
            self.view.update(compare="b")
            self._mode = "b"
            self._quiet = False
        window.docks_part.rebuild(trace)
        for name, panel in window.panels.items():
            window.docks_part.safe(panel, "set_trace", self.fed(name, trace))
        window.diff_strip.set_trace(trace if self.active(trace) else None)
        self.update_actions(trace)
        window.schedule_redraw()

    def follow(self) -> None:
        """At a redraw: a comparison shown that no longer holds (the run read past A's tokens, or other
        tokens) ends, and the panels show the run as before."""
        shown = self.window.diff_strip.active or self.view.state.compare != "b"
        if shown and not self.active():
            self.refeed()

    def update_actions(self, trace: Trace | None = None) -> None:
        trace = self.trace if trace is None else trace
        active = self.active(trace)
        self.compare_action.setEnabled(trace is not None and len(trace) > 0)
        self.clear_action.setEnabled(active)
        for mode, action in self.mode_actions.items():
            action.setEnabled(active or mode == "b")
        bar = getattr(self.window, "view_bar", None)
        if bar is not None and hasattr(bar, "show_compare"):
            bar.show_compare(active, same_model(trace.baseline, trace) if active else True)
        self._check_actions()

    def _check_actions(self) -> None:
        mode = self.mode
        if mode in self.mode_actions and not self.mode_actions[mode].isChecked():
            self.mode_actions[mode].setChecked(True)

    # -- export: what a panel shows, saying B - A where it is a difference ----------------------------------
    def shown_trace(self, name: str | None = None):
        """The trace a panel named `name` draws now (B without a comparison): what its export renders."""
        trace = self.trace
        return self.fed(name or "", trace) if trace is not None else None

    def export_figure(self, panel, path, state: ViewState, scale: float = 1.0, size=None):
        """A panel's figure as it shows now: of B - A its title says so (TraceDiff's model name)."""
        from memviz.export import render

        return render.export_figure(
            self.shown_trace(panel.name), type(panel), state, path, scale=scale, size=size
        )

    def export_csv(self, path, series: str, state: ViewState):
        """The data of a series as the panels show it now; of B - A every value column's header says
        `B-A ...` (the top-k has no difference: refused)."""
        from memviz.errors import MemvizError
        from memviz.export.data import series_rows, write_csv

        trace = self.shown_trace("attention" if series == "attention" else "state")
        difference = getattr(trace, "is_difference", False)
        if difference and series == "topk":
            raise MemvizError("the top-k of two runs has no difference: export it in the A or B view")
        rows = series_rows(
            trace, series, layer=state.layer, head=state.head, unit=state.unit, step=state.cursor
        )
        if difference:
            rows[0] = difference_header(rows[0], 3 if series == "unit" else 2)
        return write_csv(rows, path)

    def shutdown(self) -> None:
        if self.job is not None:
            self.job.cancel()
        self.jobs.stop()


def difference_header(header: list, first_value: int) -> list:
    """A CSV header whose value columns (from `first_value`) hold B - A: each says so."""
    return [h if i < first_value else f"B-A {h}" for i, h in enumerate(header)]
