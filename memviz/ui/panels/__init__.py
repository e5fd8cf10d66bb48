"""All panels, in the order the window docks them. Each is a view of the Trace."""

from __future__ import annotations

from memviz.ui.panels.attention import AttentionPanel
from memviz.ui.panels.base import Panel
from memviz.ui.panels.distribution import DistributionPanel
from memviz.ui.panels.head_distance import HeadDistancePanel
from memviz.ui.panels.head_grid import HeadGridPanel
from memviz.ui.panels.lstm_gates import GatesPanel
from memviz.ui.panels.lstm_span import SpanPanel
from memviz.ui.panels.lstm_state import StatePanel
from memviz.ui.panels.memory_panel import MemoryPanel

PANEL_CLASSES: list[type[Panel]] = [
    GatesPanel,
    StatePanel,
    SpanPanel,
    AttentionPanel,
    HeadGridPanel,
    HeadDistancePanel,
    DistributionPanel,
    MemoryPanel,
]


def panel_classes() -> list[type[Panel]]:
    return list(PANEL_CLASSES)
