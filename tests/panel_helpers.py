"""Deprecated: the panel helpers are conftest fixtures now (make_panel, settle, head_grid_bar_heights).

A thin re-export kept only until the last test module that imports it is switched to the fixtures;
delete it then.
"""

from __future__ import annotations

from conftest import bar_heights_of as head_grid_bar_heights
from conftest import settle_panel as settle


def make_panel(qtbot, cls, trace, **state):
    """A shown panel of class `cls` on `trace`, rendered at ViewState(**state); returns (view, panel)."""
    from memviz.core.view import ViewState
    from memviz.panels.view_model import ViewModel

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


__all__ = ["head_grid_bar_heights", "make_panel", "settle"]
