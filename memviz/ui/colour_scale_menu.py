"""View -> Colour scale: how the heatmaps choose their colour levels (ViewState.scale)."""

from __future__ import annotations

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu

from memviz.core.view import ViewState
from memviz.panels.view_model import ViewModel

SCALE_LABELS = (
    (
        "stable",
        "Stable (only grows during a run)",
        "Colours never shift as steps come: the widest range so far",
    ),
    (
        "fixed",
        "Fixed (natural range)",
        "0..1 for probabilities and gates, -1..1 for tanh, the run's largest |c|",
    ),
    ("step", "Per step", "Each step's own range: colours can shift at every step"),
)


def add_colour_scale_menu(menu: QMenu, view: ViewModel) -> dict[str, QAction]:
    """A 'Colour scale' submenu of `menu`, its check kept in step with the view (a restored session)."""
    submenu = menu.addMenu("Colour scale")
    group = QActionGroup(submenu)
    group.setExclusive(True)
    actions: dict[str, QAction] = {}
    for name, label, tip in SCALE_LABELS:
        action = QAction(label, submenu, checkable=True)
        action.setToolTip(tip)
        action.setChecked(view.state.scale == name)
        action.triggered.connect(lambda _checked=False, n=name: view.update(scale=n))
        group.addAction(action)
        submenu.addAction(action)
        actions[name] = action

    def follow(state: ViewState) -> None:
        if state.scale in actions and not actions[state.scale].isChecked():
            actions[state.scale].setChecked(True)

    view.changed.connect(follow)
    return actions
