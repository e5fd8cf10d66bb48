"""A step axis over a long run writes step numbers, not one token in twenty or more (a character model's
scattered "t h s a" says nothing about where a column is); a short run keeps its tokens."""

from __future__ import annotations

import pytest

from memviz.panels.lstm_gates import GatesPanel
from memviz.panels.token_axis import SPARSE_STEP

LONG_TEXT = "An event loop runs in a thread and executes all callbacks and tasks in its thread. " * 8


@pytest.fixture(scope="module")
def long_trace(run_session, lstm_dir):
    return run_session(lstm_dir, text=LONG_TEXT).trace


def _axis(panel):
    from memviz.panels.heatmap import heatmaps_of

    return heatmaps_of(panel)[0].plot.getAxis("bottom")


def test_a_long_run_is_labelled_by_step_numbers(qtbot, make_panel, long_trace):
    assert len(long_trace) > 600
    _, panel = make_panel(GatesPanel, long_trace, cursor=len(long_trace) - 1)
    axis = _axis(panel)
    assert axis.step >= SPARSE_STEP and len(axis.shown) >= 2
    assert axis.tickStrings([i + 0.5 for i in axis.shown], 1, 1) == [str(i) for i in axis.shown]


def test_a_short_run_keeps_its_tokens(qtbot, make_panel, run_session, lstm_dir):
    trace = run_session(lstm_dir, text="def f(x):").trace
    _, panel = make_panel(GatesPanel, trace, cursor=len(trace) - 1)
    axis = _axis(panel)
    assert 1 <= axis.step < SPARSE_STEP
    strings = axis.tickStrings([i + 0.5 for i in axis.shown], 1, 1)
    assert strings and not all(s.isdigit() for s in strings)
