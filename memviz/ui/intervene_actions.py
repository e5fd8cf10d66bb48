"""Run -> Intervene... / Clear interventions, and right-click to intervene: the same text read again
with the model changed.

Intervening keeps the plain run shown as the *baseline* (its Trace), hands the specs to the session
on the worker (the one thread that owns the model) and reads the text again from the first step the
change touches (memviz.core.resume): the steps before it are taken over from the run shown, not
recomputed (Playback.reread -> Session.resume_from). Every trace shown meanwhile carries the baseline
as `trace.baseline`, for the compare panel. Clearing the interventions reads the text again without
them and forgets the baseline; so does a new model. The status bar says what is being done, then
what was done ("head:3.0=zero: re-read from step 0 in 1.2 s").

Right-click: a panel (or the token strip) offers the interventions on the item under the mouse as
`intervention_targets_at(global_pos) -> [(label, spec)]`; a spec ending in "=?" asks for its value
(a clamp, default 0). Choosing one adds it to the interventions on (or removes it, if it is on).
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QObject, QPoint, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QInputDialog, QLineEdit, QMenu, QWidget

from memviz.core import interventions as specs_module
from memviz.core.resume import first_changed_step
from memviz.core.trace import Trace
from memviz.errors import MemvizError
from memviz.ui.playback import Playback

ASK = "=?"  # a target spec ending so asks for its value (a clamp)


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
        self.last_done = ""  # what the status bar said when the last re-read ended
        self.done_count = 0  # re-reads ended
        self._doing = ""  # the interventions being read in, as the status bar names them
        self.intervene_action = QAction("Intervene...", window)
        self.intervene_action.setToolTip(
            "Change the model (e.g. head:1.0=zero) and read the same text again from the first step it "
            "changes; the run before is kept as the baseline (the Compare with baseline panel). "
            "Right-click a head, a unit or a token to intervene there."
        )
        self.intervene_action.triggered.connect(self.intervene_dialog)
        self.clear_action = QAction("Clear interventions", window)
        self.clear_action.triggered.connect(self.clear)
        playback.model_loaded.connect(self._forget)
        playback.actions_changed.connect(self.update_actions)
        playback.reread_finished.connect(self._reread_finished)
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
        """Check the specs, keep the plain run as the baseline and read the text again with them from
        the first step they change. A bad spec is one message and nothing runs; False then."""
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
        if first_changed_step(self.active, specs) is None:
            return self._refuse(f"{specs_module.describe(specs)}: on already")
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

    def toggle(self, spec: str) -> bool:
        """A right-click's choice: the spec on top of those on (a second context window replaces the
        first), or, if it is on already, off. A spec ending in "=?" asks for its value first."""
        if spec.endswith(ASK):
            value = self.ask_value(spec[: -len(ASK)])
            if value is None:
                return False
            spec = f"{spec[: -len(ASK)]}={value:g}"
        try:
            new = specs_module.parse(spec)
        except MemvizError as exc:
            return self._refuse(str(exc))
        kept = [s for s in self.active if s.spec != new.spec]
        if len(kept) == len(self.active):  # not on: add it
            kept = [s for s in kept if not (new.kind == "context" and s.kind == "context")]
            kept.append(new)
        if not kept:
            self.clear()
            return True
        return self.intervene([s.spec for s in kept])

    def ask_value(self, target: str) -> float | None:
        """The value a clamp sets (a small dialog, default 0); None if cancelled."""
        value, ok = QInputDialog.getDouble(
            self.window, "Clamp", f"{target} = (after each step)", 0.0, -1e6, 1e6, 3
        )
        return float(value) if ok else None

    # -- right-click -----------------------------------------------------------------------------
    def menu_entries(self, menu: QMenu, source, global_pos: QPoint | None) -> list[QAction]:
        """Add the interventions `source` (a panel, the token strip) offers at `global_pos` to the
        top of `menu`; each toggles its spec. Nothing without a model or without targets there."""
        targets = getattr(source, "intervention_targets_at", None)
        if targets is None or global_pos is None or self.playback.info is None:
            return []
        on = {s.spec for s in self.active}
        first = menu.actions()[0] if menu.actions() else None
        added = []
        for label, spec in targets(global_pos):
            if spec.endswith(ASK):
                undo = [s for s in on if s.startswith(spec[: -len(ASK)] + "=")]
                entries = [(label, spec)] + [(f"remove {s}", s) for s in undo]
            else:
                entries = [(f"remove {spec}" if spec in on else label, spec)]
            for text, chosen in entries:
                action = QAction(text, menu)
                action.setData(chosen)
                action.triggered.connect(lambda _checked=False, s=chosen: self.toggle(s))
                menu.insertAction(first, action)
                added.append(action)
        if added and first is not None:
            menu.insertSeparator(first)
        return added

    def strip_menu(self, strip, global_pos: QPoint) -> QMenu:
        """The token strip's right-click menu: its interventions (none: a line saying why)."""
        menu = QMenu(strip)
        if not self.menu_entries(menu, strip, global_pos):
            none = menu.addAction("no intervention here (load a model and read a text)")
            none.setEnabled(False)
        return menu

    @Slot(object)
    def show_strip_menu(self, global_pos: QPoint) -> None:
        strip = self.sender()
        self.strip_menu(strip, global_pos).exec(global_pos)

    # -- helpers ---------------------------------------------------------------------------------
    def _refuse(self, reason: str) -> bool:
        self.last_error = reason
        self.playback.message.emit(f"intervene: {reason}")
        return False

    def _rerun(self, specs: tuple) -> bool:
        session_specs = tuple(specs)
        step = first_changed_step(self.active, session_specs) or 0

        def apply(session) -> None:  # on the worker's thread, before the new run starts
            session.set_interventions(session_specs)

        self.active = session_specs
        self._doing = specs_module.describe(session_specs) or "interventions cleared"
        self.playback.reread(step, apply)
        self.playback.message.emit(f"{self._doing}: reading the text again from step {step} ...")
        self.update_actions()
        return True

    def expect_reread(self, label: str) -> None:
        """Another part reads the text again (Run > Read past the context window): the status bar
        names it when the re-read ends, not the interventions."""
        self._doing = label

    @Slot(int, float, str)
    def _reread_finished(self, taken: int, seconds: float, reason: str) -> None:
        """What happened, in the status bar (it replaces 'reading the text again ...')."""
        doing = self._doing or specs_module.describe(self.active) or "interventions"
        if not reason or reason.startswith("end of the text"):
            done = f"{doing}: re-read from step {taken} in {seconds:.1f} s"
        elif reason == "paused":
            done = f"{doing}: re-read paused (Play reads the rest)"
        else:
            done = f"{doing}: re-read stopped: {reason}"
        self.last_done = done
        self.done_count += 1
        self.playback.message.emit(done)

    @Slot(str, object)
    def _forget(self, _spec: str, _info) -> None:
        """A new model: its session starts plain, the old baseline means nothing for it."""
        self.baseline = None
        self.active = ()
        self.update_actions()
