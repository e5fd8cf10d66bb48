"""All panels, in the order the window docks them. Each is a view of the Trace."""

from __future__ import annotations

from memviz.ui.panels.base import Panel

PANEL_CLASSES: list[type[Panel]] = []


def panel_classes() -> list[type[Panel]]:
    return list(PANEL_CLASSES)
