"""All panels, in the order the window docks them. Each is a view of the Trace."""

from __future__ import annotations

from memviz.panels.attention import AttentionPanel
from memviz.panels.base import Panel
from memviz.panels.compare_strip import CompareStripPanel
from memviz.panels.distribution import DistributionPanel
from memviz.panels.head_distance import HeadDistancePanel
from memviz.panels.head_grid import HeadGridPanel
from memviz.panels.logit_lens import LogitLensPanel
from memviz.panels.lstm_gates import GatesPanel
from memviz.panels.lstm_span import SpanPanel
from memviz.panels.lstm_state import StatePanel
from memviz.panels.match import MatchPanel
from memviz.panels.memory_panel import MemoryPanel
from memviz.panels.prediction import PredictionPanel

PANEL_CLASSES: list[type[Panel]] = [
    GatesPanel,
    StatePanel,
    SpanPanel,
    PredictionPanel,
    AttentionPanel,
    HeadGridPanel,
    HeadDistancePanel,
    DistributionPanel,
    LogitLensPanel,  # a --logit-lens trace only
    CompareStripPanel,  # a run with a baseline (Run -> Intervene...)
    MemoryPanel,
    MatchPanel,  # after Run -> Find similar... (a search's matches, for the run it searched)
]


def panel_classes() -> list[type[Panel]]:
    return list(PANEL_CLASSES)
