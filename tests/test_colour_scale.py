"""Colour scales (issue 13 item 8): stable by default (levels only grow during a run, also across the
frames of an animation), fixed (the quantity's natural range over the whole trace) or per step; saved
in session files and chosen with `memviz export --colour-scale`. And heatmaps end exactly at their
data once a run is settled."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.errors import MemvizError
from memviz.panels import colormaps
from memviz.panels.head_distance import HeadDistancePanel
from memviz.panels.heatmap import Heatmap, stable_extent
from memviz.panels.lstm_state import StatePanel
from memviz.panels.scales import ColourScale

LAYER = 1


@pytest.fixture(scope="module")
def traces(run_session, lstm_dir, gpt2_dir, sample_text) -> dict[str, Trace]:
    return {
        "gpt2": run_session(gpt2_dir, sample_text[:90], generate=4).trace,
        "lstm": run_session(lstm_dir, sample_text[:90], generate=4).trace,
    }


def mean_distance(trace: Trace, t: int) -> np.ndarray:
    """[L, A] mean attention distance over queries 0..t, from the dense attention (independent)."""
    dense = trace.attention_tensor().astype(np.float64)[:, :, : t + 1, : t + 1]
    q = np.arange(t + 1)[:, None]
    back = (q - np.arange(t + 1)[None, :]).clip(min=0)
    return (dense * back).sum(axis=(2, 3)) / (t + 1)


def step_top(trace: Trace, t: int) -> float:
    return colormaps.nice_ceiling(max(float(mean_distance(trace, t).max()), 1.0))


def test_a_stable_scale_only_grows_and_a_step_scale_follows(qtbot):
    scale = ColourScale((0.0, 1.0), "distance")
    asked = [(0.0, 10.0), (0.0, 5.0), (0.0, 25.0), (0.0, 2.0)]  # what the issue saw: 0-10, 0-5, 0-25
    assert [scale.levels(a) for a in asked] == [(0.0, 10.0), (0.0, 10.0), (0.0, 25.0), (0.0, 25.0)]
    scale.begin("step", 0, None)
    assert [scale.levels(a) for a in asked] == asked
    scale.begin("stable", 0, None)
    assert scale.levels((0.0, 5.0)) == (0.0, 5.0)  # a new mode starts again
    scale.reset()
    assert scale.levels((0.0, 2.0)) == (0.0, 2.0)  # so does a new trace


def test_head_distance_levels_stay_put_while_playing_and_scrubbing(traces, make_panel):
    trace = traces["gpt2"]
    T = len(trace)
    tops = [step_top(trace, t) for t in range(T)]
    assert len(set(tops)) > 1, "the run's own scale must change for this test to mean anything"
    view, panel = make_panel(HeadDistancePanel, trace, cursor=0)
    seen = []
    for cursor in range(T):
        view.update(cursor=cursor)
        seen.append(panel.heatmap.levels)
        assert panel.heatmap.levels == (0.0, max(tops[: cursor + 1]))
    view.update(cursor=2)  # scrubbing back keeps the widest
    assert panel.heatmap.levels == (0.0, max(tops))
    assert all(b[1] >= a[1] for a, b in zip(seen, seen[1:], strict=False))

    view.update(scale="step")  # the old behaviour, on request
    assert panel.heatmap.levels == (0.0, tops[2])
    view.update(scale="fixed")  # 0..the longest distance the run allows
    assert panel.heatmap.levels == (0.0, colormaps.nice_ceiling(T - 1))
    view.update(cursor=T - 1)
    assert panel.heatmap.levels == (0.0, colormaps.nice_ceiling(T - 1))

    panel.set_trace(trace)  # a new trace: the stable scale starts again
    view.update(scale="stable", cursor=0)
    panel.render(view.state)
    assert panel.heatmap.levels == (0.0, tops[0])


def test_fixed_scales_are_the_natural_ranges(traces, make_panel):
    trace = traces["lstm"]
    view, panel = make_panel(StatePanel, trace, cursor=3, layer=LAYER, scale="fixed")
    cell = trace.array("cell")[:, LAYER]
    level = colormaps.symmetric_level(np.array([np.abs(cell).max()]))  # the whole run's largest |c|
    assert panel.heatmaps["cell"].levels == (-level, level)
    assert panel.heatmaps["hidden"].levels == (-1.0, 1.0)  # tanh
    view.update(cursor=len(trace) - 1)
    assert panel.heatmaps["cell"].levels == (-level, level)
    other = colormaps.symmetric_level(np.array([np.abs(trace.array("cell")[:, 0]).max()]))
    view.update(layer=0)
    assert panel.heatmaps["cell"].levels == (-other, other)


def colour_bar_strips(path) -> list[np.ndarray]:
    """Each GIF frame's right-hand part (the colour bar and its ticks), below the title band."""
    from PIL import Image, ImageSequence

    with Image.open(path) as gif:
        frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
    h, w, _ = frames[0].shape
    return [frame[h // 6 :, int(w * 0.9) :] for frame in frames]


@pytest.mark.parametrize("theme", ["dark", "talk"])
def test_gif_frames_share_one_scale(traces, tmp_path, theme):
    from memviz.export.animate import export_animation

    trace = traces["gpt2"]
    state = ViewState(cursor=0, theme=theme)
    tops = {step_top(trace, t) for t in range(len(trace))}
    assert len(tops) > 1
    strips = {}
    for scale in ("stable", "step"):
        out = export_animation(
            trace,
            "head-distance",
            replace(state, scale=scale),
            tmp_path / f"{scale}-{theme}.gif",
            size=(640, 360),
        )
        strips[scale] = colour_bar_strips(out)
    assert len(strips["stable"]) == len(trace)

    def change(frames: list[np.ndarray]) -> float:  # the most any frame's strip differs from the first's
        return max(float(np.abs(f.astype(int) - frames[0].astype(int)).mean()) for f in frames)

    # frames are quantised to 256 colours each: the same picture differs by a little noise (< 0.2)
    assert change(strips["stable"]) < 0.5
    # the per-step scale does change its colour bar's ticks: the comparison above can fail
    assert change(strips["step"]) > 1.5


def test_the_colour_scale_is_saved_in_sessions(traces, tmp_path):
    from memviz.export.session_file import load_session, save_session, state_from_dict

    trace = traces["lstm"]
    path = save_session(tmp_path / "s.memviz", trace, ViewState(cursor=2, scale="fixed"))
    assert load_session(path).state.scale == "fixed"
    old = {"cursor": 2, "layer": 1, "theme": "talk"}  # a file from before the field
    assert state_from_dict(old).scale == "stable"
    assert state_from_dict({**old, "scale": "rainbow"}).scale == "stable"


def test_export_takes_a_colour_scale(traces, tmp_path):
    import argparse

    from memviz.cli import build_parser
    from memviz.export.cli import view_state

    trace = traces["gpt2"]
    parser = build_parser()
    for option, expected in ((["--colour-scale", "fixed"], "fixed"), ([], "stable")):
        args = parser.parse_args(["export", "--trace", "x.memviz", "--panel", "head-distance", *option])
        assert isinstance(args, argparse.Namespace)
        assert view_state(args, trace, None).scale == expected
    saved = ViewState(cursor=1, scale="step")
    args = parser.parse_args(["export", "--trace", "x.memviz", "--panel", "head-distance"])
    assert view_state(args, trace, saved).scale == "step"  # a session's scale is the default
    with pytest.raises(MemvizError, match="--colour-scale"):
        parser.parse_args(["export", "--trace", "x.memviz", "--colour-scale", "rainbow"])


# -- the view settles at the data --------------------------------------------------------------------
@pytest.fixture(scope="module")
def long_traces(run_session, lstm_dir, gpt2_dir, sample_text) -> dict[str, Trace]:
    """Runs past 64 steps (where a stable extent is longer than the data), the last ones generated."""
    return {  # the tiny GPT-2's tokens are a few characters long
        "gpt2": run_session(gpt2_dir, (sample_text * 2)[:190], generate=6).trace,
        "lstm": run_session(lstm_dir, sample_text[:75], generate=6).trace,
    }


def heatmaps(panel) -> list[Heatmap]:
    from memviz.panels.heatmap import heatmaps_of

    return heatmaps_of(panel)


@pytest.mark.parametrize("name", ["attention", "state", "gates", "span"])
def test_after_a_run_every_heatmap_ends_at_its_data(name, long_traces, make_panel, qtbot):
    from memviz.panels.registry import PANEL_CLASSES

    cls = next(c for c in PANEL_CLASSES if c.name == name)
    trace = long_traces["gpt2" if name == "attention" else "lstm"]
    T = len(trace)
    assert stable_extent(T) > T
    view, panel = make_panel(cls, trace, cursor=0)
    for cursor in range(1, T):  # steps as quickly as a run brings them
        view.update(cursor=cursor)
    found = heatmaps(panel)
    assert found
    grown = [h for h in found if any(h.grows)]
    assert grown and any(h.view_extent != h.data.shape for h in grown), "during the run: a stable extent"
    qtbot.waitUntil(lambda: all(h.view_extent == h.data.shape for h in found), timeout=3_000)
    rows, cols = found[0].data.shape
    assert cols == T and (rows == T or name != "attention")
