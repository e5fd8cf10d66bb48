"""What the panel tests share: build a panel on a trace, let it settle, read the head grid's bars back."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QApplication

from memviz.core.view import ViewState
from memviz.panels.view_model import ViewModel


def make_panel(qtbot, cls, trace, **state):
    """A shown panel of class `cls` on `trace`, rendered at ViewState(**state); returns (view, panel)."""
    view = ViewModel(ViewState(**state))
    panel = cls(view)
    qtbot.addWidget(panel)
    panel.set_trace(trace)
    view.changed.connect(panel.render)
    panel.resize(900, 500)
    panel.show()
    panel.render(view.state)
    qtbot.waitExposed(panel)
    settle(panel)
    return view, panel


def settle(panel) -> None:
    """Let the layout and the views' auto-ranges (applied at paint time) reach their final state."""
    for _ in range(2):
        QApplication.processEvents()
        panel.grab()
    QApplication.processEvents()


def head_grid_bar_heights(panel) -> np.ndarray:
    """The filled pixel rows of every bar column of every cell, read back from the head grid's image
    ([L, A, bins]); checks the margins are empty and each column is filled from its baseline up."""
    layers, heads = panel.shape
    (width, height), (mx, my) = panel.cell_size, panel.margin
    alpha = (panel.image.pixels >> 24).reshape(layers, height, heads, width) > 0  # ARGB32: alpha on top
    bars = alpha[:, my : height - my, :, mx : mx + panel.bins]  # [L, levels, A, bins], top row first
    assert bars.sum() == alpha.sum()  # nothing outside the bars' area
    heights = bars.sum(axis=1)
    rows = np.arange(panel.levels)[None, :, None, None]
    np.testing.assert_array_equal(bars, rows >= panel.levels - heights[:, None])
    return heights
