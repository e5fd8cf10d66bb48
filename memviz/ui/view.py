"""The view state shared by all panels: which step, layer, head and unit are selected.

Panels read it and ask to change it (a click on a unit or a head); they never call the model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, Signal

from memviz.ui.theme import THEMES, Theme


@dataclass(frozen=True)
class ViewState:
    cursor: int = -1  # the step shown; -1 = no step yet
    layer: int = 0
    head: int = 0
    unit: int = 0  # selected LSTM unit (row of the cell/hidden heatmaps)
    signal: str = "attention"  # what tints the token strip: "attention", "unit", "memory", "none"
    follow: bool = True  # cursor follows the newest step while the model runs
    theme: str = "dark"

    @property
    def theme_obj(self) -> Theme:
        return THEMES[self.theme]


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
