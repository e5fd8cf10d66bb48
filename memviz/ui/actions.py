"""The window's own actions, declared as data: (name, text, shortcut, slot, menu, tooltip).

`build_actions(window, menus)` makes a QAction per row, connects it to the window's method of that
name and adds it to its menu; the window keeps them as `window.window_actions[name]`. Actions that belong
to a part (the transport's Play, the export actions) are made by that part.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QWidget


@dataclass(frozen=True)
class ActionSpec:
    name: str
    text: str
    shortcut: str | QKeySequence.StandardKey | None
    slot: str  # the window's method it triggers
    menu: str | None  # "file", "quit" (File, below the extras), "view", "run" (placed by the window) or None
    tooltip: str = ""


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("open_text", "Open text...", QKeySequence.StandardKey.Open, "open_text_dialog", "file"),
    ActionSpec(
        "open_model",
        "Model...",
        "Ctrl+M",
        "show_model_picker",
        "file",
        "Choose a model: bundled, recent, a folder or a Hugging Face id (Ctrl+M)",
    ),
    ActionSpec("open_folder", "Open model folder...", "Ctrl+Shift+O", "open_model_folder_dialog", "file"),
    ActionSpec("open_trace", "Open trace...", None, "open_trace_dialog", "file"),
    ActionSpec(
        "open_experiment",
        "Open experiment results...",
        None,
        "open_experiment_results",
        "file",
        "Show a saved memory-span experiment's folder (results.csv and its figures) again",
    ),
    ActionSpec(
        "experiments",
        "Experiments...",
        None,
        "show_experiments",
        "run",
        "Memory-span experiments (copy, context, timescales, knn) on one or more models",
    ),
    ActionSpec("quit", "Quit", QKeySequence.StandardKey.Quit, "close", "quit"),
    ActionSpec("reset_layout", "Reset layout", None, "reset_layout", "view"),
)

#: the main toolbar, in this order
TOOLBAR: tuple[str, ...] = ("open_model", "open_text")


def build_actions(window: QWidget, menus: dict[str, QMenu], specs=ACTIONS) -> dict[str, QAction]:
    actions: dict[str, QAction] = {}
    for spec in specs:
        action = QAction(spec.text, window)
        if spec.shortcut is not None:
            action.setShortcut(QKeySequence(spec.shortcut))
        if spec.tooltip:
            action.setToolTip(spec.tooltip)
        slot = getattr(window, spec.slot)
        action.triggered.connect(lambda _checked=False, slot=slot: slot())
        if spec.menu in menus:  # "quit" is placed by the window, below the separators
            menus[spec.menu].addAction(action)
        actions[spec.name] = action
    return actions
