"""The live view state shared by all panels: which step, layer, head and unit are selected.

Panels read it and ask to change it (a click on a unit or a head); they never call the model.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QObject, Signal

from memviz.core.view import ViewState


class ViewModel(QObject):
    """Holds the current ViewState; `changed` fires with the new state after any edit."""

    changed = Signal(object)

    def __init__(self, state: ViewState | None = None) -> None:
        super().__init__()
        self._state = state or ViewState()

    @property
    def state(self) -> ViewState:
        return self._state

    def update(self, **changes) -> None:
        new = replace(self._state, **changes)
        if new != self._state:
            self._state = new
            self.changed.emit(new)
