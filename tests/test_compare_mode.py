"""Comparing two runs in the app (issue 17, item 2): B - A in core (TraceDiff), every panel in the A, B
and B - A views, the diff strip, File -> Compare with... and what ends a comparison.

Real runs of the tiny models: the same text with and without an intervention (head 1.0 ablated for
GPT-2, unit 3 of layer 0 clamped for the LSTM); every number is checked against the two traces'
own arrays, subtracted here.
"""

from __future__ import annotations

import numpy as np
import pytest

from memviz.core.interventions import parse_all
from memviz.core.trace import Trace
from memviz.core.trace_diff import PREDICTION_KEYS, TraceDiff, check_comparable, same_model
from memviz.panels import colormaps
from memviz.panels.attention import AttentionPanel
from memviz.panels.compare_modes import PlaceholderPanel, fed_trace, panel_class_for
from memviz.panels.compare_strip import CompareStripPanel
from memviz.panels.distribution import DistributionPanel
from memviz.panels.head_distance import HeadDistancePanel
from memviz.panels.head_grid import HeadGridPanel
from memviz.panels.head_grid_diff import HeadGridDiffPanel
from memviz.panels.logit_lens import LogitLensPanel
from memviz.panels.lstm_gates import GatesPanel
from memviz.panels.lstm_span import SpanPanel
from memviz.panels.lstm_state import StatePanel
from memviz.panels.memory_panel import MemoryPanel

LAYER, HEAD, UNIT = 2, 1, 5  # GPT-2: layer 2 reads the output of the ablated head 1.0


@pytest.fixture(scope="module")
def runs(run_session, lstm_dir, gpt2_dir, tmp_path_factory) -> dict[str, Trace]:
    """Saved and loaded back: GPT-2 plain / head 1.0 ablated (both with the logit lens), the LSTM
    plain / unit 3 clamped, and a second GPT-2 of other weights over the same tokens."""
    folder = tmp_path_factory.mktemp("compare-mode")
    made = {
        "gpt2_a": run_session(gpt2_dir, logit_lens=True),
        "gpt2_b": run_session(gpt2_dir, logit_lens=True, interventions=parse_all(["head:1.0=zero"])),
        "lstm_a": run_session(lstm_dir),
        "lstm_b": run_session(lstm_dir, interventions=parse_all(["cell:0.3=1.0"])),
    }
    return {name: Trace.load(s.trace.save(folder / f"{name}.memviz")) for name, s in made.items()}


def pair(runs, family: str) -> tuple[Trace, Trace]:
    return runs[f"{family}_a"], runs[f"{family}_b"]


# -- core -------------------------------------------------------------------------------------------------
def test_difference_is_b_minus_a_for_every_aligned_column(runs):
    for family, keys in (
        ("gpt2", ("target_logprob", "entropy", "lens_target_prob")),
        ("lstm", ("gates", "cell", "hidden", "target_logprob", "entropy")),
    ):
        a, b = pair(runs, family)
        d = TraceDiff(a, b)
        assert len(d) == len(a) == len(b)
        for key in keys:
            assert d.has(key), key
            expected = b.array(key).astype(np.float32) - a.array(key).astype(np.float32)
            np.testing.assert_array_equal(d.array(key), expected)
        assert np.nanmax(np.abs(d.array("target_logprob"))) > 0  # the intervention changed something
        # by rank or id, not by place: no difference
        for key in ("topk_ids", "topk_probs", "lens_topk_ids", "lens_topk_probs"):
            assert not d.has(key)
            with pytest.raises(KeyError):
                d.array(key)


def test_attention_difference(runs):
    a, b = pair(runs, "gpt2")
    d = TraceDiff(a, b)
    t = len(d) - 1
    rows = b.attention_rows_at(t).astype(np.float32) - a.attention_rows_at(t).astype(np.float32)
    np.testing.assert_array_equal(d.attention_rows_at(t), rows)
    assert np.abs(rows[1, 0]).max() > 0 or np.abs(rows[2]).max() > 0  # layers above the ablation move
    np.testing.assert_array_equal(
        d.attention_matrix(LAYER, HEAD), b.attention_matrix(LAYER, HEAD) - a.attention_matrix(LAYER, HEAD)
    )
    # the mean distance back is linear in the rows: B's minus A's equals the distance of B - A
    dense = d.attention_tensor().astype(np.float64)
    T = dense.shape[-1]
    back = np.arange(T)[:, None] - np.arange(T)[None, :]
    by_rows = (dense * np.tril(back)).sum(-1).mean(-1)
    np.testing.assert_allclose(d.mean_attention_distance(), by_rows, atol=1e-5)


def test_difference_follows_a_run_that_is_still_reading(runs):
    a, b_full = pair(runs, "gpt2")
    b = Trace(model=b_full.model)
    d = TraceDiff(a, b)
    assert len(d) == 0
    from memviz.core.trace import StepRecord

    for t in range(5):
        b.append(
            StepRecord(b_full.token_ids[t], b_full.token_text[t], False, b_full.array("topk_ids")[t],
                       b_full.array("topk_probs")[t], memory={"target_logprob": b_full.array("target_logprob")[t]})
        )  # fmt: skip
        assert len(d) == t + 1
        np.testing.assert_array_equal(
            d.array("target_logprob"),
            b_full.array("target_logprob")[: t + 1] - a.array("target_logprob")[: t + 1],
        )


def test_comparable_needs_the_same_tokens_and_two_models_compare_predictions_only(
    runs, run_session, gpt2_dir_factory, tmp_path
):
    a, b = pair(runs, "gpt2")
    assert check_comparable(a, b) is None
    shorter = run_session(gpt2_dir_factory(tmp_path / "same", seed=0), text=a.text()[:-4]).trace
    reason = check_comparable(shorter, b)
    assert reason is not None and "different tokens" in reason and "\n" not in reason
    lstm = runs["lstm_a"]
    assert "different tokens" in (check_comparable(lstm, b) or "")  # characters vs GPT-2's tokens
    other = Trace.load(
        run_session(gpt2_dir_factory(tmp_path / "other", seed=7), logit_lens=True).trace.save(
            tmp_path / "o.memviz"
        )
    )
    other.model["name"] = "other-gpt2"
    assert check_comparable(a, other) is None  # two models sharing a tokenizer
    assert not same_model(a, other)
    d = TraceDiff(a, other)
    assert set(d.column_names) == {k for k in PREDICTION_KEYS if other.has(k)}
    assert not d.has("lens_target_prob") and not d.has("attention") and d.attention_shape is None


# -- panels -------------------------------------------------------------------------------------------------
def shown_heatmaps(panel) -> dict[str, np.ndarray]:
    from memviz.panels.heatmap import heatmaps_of

    return {h.value_name: h.data for h in heatmaps_of(panel) if h.data.size}


@pytest.mark.parametrize("cls", [AttentionPanel, HeadGridPanel, HeadDistancePanel, LogitLensPanel])
def test_transformer_panels_in_b_minus_a_show_b_minus_a(make_panel, runs, cls):
    a, b = pair(runs, "gpt2")
    b.baseline = a
    d = fed_trace(cls.name, "diff", b, TraceDiff(a, b))
    shown_cls = panel_class_for(cls, "diff")
    t = len(b) - 2
    view, panel = make_panel(shown_cls, d, cursor=t, layer=LAYER, head=HEAD)
    if cls is AttentionPanel:
        expected = (b.attention_matrix(LAYER, HEAD) - a.attention_matrix(LAYER, HEAD))[: t + 1, : t + 1]
        np.testing.assert_array_equal(panel.heatmap.data, expected)
    elif cls is HeadGridPanel:
        assert shown_cls is HeadGridDiffPanel
        expected = b.attention_rows_at(t).astype(np.float32) - a.attention_rows_at(t).astype(np.float32)
        np.testing.assert_array_equal(panel.rows, expected)
        # bars: up for B - A > 0, down for < 0, their sizes on the symmetric level
        assert (panel.heights > 0).any() and (panel.heights < 0).any()
        assert np.all(
            np.sign(panel.heights[panel.heights != 0]) == np.sign(np.round(panel.heights[panel.heights != 0]))
        )
        assert "B \u2212 A" in panel.tooltip_for(LAYER, HEAD)
    elif cls is HeadDistancePanel:
        expected = b.mean_attention_distance(t + 1) - a.mean_attention_distance(t + 1)
        np.testing.assert_allclose(panel.heatmap.data, expected, atol=1e-5)
    else:
        expected = (b.array("lens_target_prob") - a.array("lens_target_prob"))[: t + 1].T
        np.testing.assert_array_equal(panel.heatmap.data, expected)
    for heatmap in shown_heatmaps_items(panel):  # diverging, symmetric around 0
        assert heatmap.cmap_name == colormaps.DIVERGING
        lo, hi = heatmap.levels
        assert lo == -hi and hi >= np.nanmax(np.abs(heatmap.data))
    # back to B: B's own numbers, B's own colours
    panel.set_trace(b)
    view.update(cursor=t - 1)
    panel.render(view.state)
    if cls is AttentionPanel:
        np.testing.assert_array_equal(panel.heatmap.data, b.attention_matrix(LAYER, HEAD)[:t, :t])
        assert panel.heatmap.cmap_name == colormaps.SEQUENTIAL and panel.heatmap.levels[0] >= 0


def shown_heatmaps_items(panel):
    from memviz.panels.heatmap import heatmaps_of

    return [h for h in heatmaps_of(panel) if h.data.size]


@pytest.mark.parametrize("cls", [GatesPanel, StatePanel])
def test_recurrent_panels_in_b_minus_a_show_b_minus_a(make_panel, runs, cls):
    a, b = pair(runs, "lstm")
    d = TraceDiff(a, b)
    t = len(b) - 1
    _view, panel = make_panel(panel_class_for(cls, "diff"), d, cursor=t, layer=0, unit=UNIT)
    heatmaps = shown_heatmaps_items(panel)
    assert heatmaps
    if cls is StatePanel:
        for heatmap in heatmaps:
            key = "cell" if heatmap.value_name == "c" else "hidden"
            expected = (b.array(key) - a.array(key))[: t + 1, 0].T
            shown = heatmap.data
            order = getattr(panel, "units", None)
            rows = shown.shape[0]
            # the rows may be sorted: compare as sets of rows
            assert shown.shape == expected[:rows].shape or shown.shape[1] == expected.shape[1]
            assert {tuple(np.round(r, 6)) for r in shown} <= {tuple(np.round(r, 6)) for r in expected}, order
    else:
        gates = (b.array("gates") - a.array("gates"))[: t + 1, 0]  # [t+1, 4, H]
        candidates = {tuple(np.round(r, 6)) for g in range(4) for r in gates[:, g].T}
        for heatmap in heatmaps:
            assert {tuple(np.round(r, 6)) for r in heatmap.data} <= candidates
    for heatmap in heatmaps:
        assert heatmap.cmap_name == colormaps.DIVERGING and heatmap.levels[0] == -heatmap.levels[1]
    assert np.abs(np.concatenate([h.data.ravel() for h in heatmaps])).max() > 0


@pytest.mark.parametrize("cls", [DistributionPanel, MemoryPanel, SpanPanel])
def test_panels_without_a_difference_show_why(make_panel, runs, cls):
    shown = panel_class_for(cls, "diff")
    assert issubclass(shown, PlaceholderPanel) and shown.name == cls.name and shown.title == cls.title
    a, b = pair(runs, "lstm")
    _view, panel = make_panel(shown, TraceDiff(a, b), cursor=3)
    assert "difference" in panel.label.text() or "A or B" in panel.label.text()
    assert panel_class_for(shown, "b") is cls and panel_class_for(cls, "a") is cls
    # two different models: every state panel says so, the compare panel still compares
    other = panel_class_for(AttentionPanel, "diff", same_model=False, names=("x", "y"))
    assert issubclass(other, PlaceholderPanel) and "different models" in other.reason
    assert panel_class_for(CompareStripPanel, "diff", same_model=False) is CompareStripPanel


# -- the window ------------------------------------------------------------------------------------------
@pytest.fixture
def saved_pair(runs, tmp_path) -> tuple:
    a, b = pair(runs, "gpt2")
    return a.save(tmp_path / "plain.memviz"), b.save(tmp_path / "ablated.memviz")


def compare_in_window(make_window, qtbot, saved_pair):
    path_a, path_b = saved_pair
    window = make_window()
    window.open_trace(path_b)
    job = window.compare_actions.compare_with(path_a)
    assert job is not None
    qtbot.waitUntil(lambda: window.compare_actions.active(), timeout=10_000)
    return window


def test_compare_with_a_saved_trace_feeds_a_b_and_b_minus_a(make_window, qtbot, saved_pair, settle):
    window = compare_in_window(make_window, qtbot, saved_pair)
    b, a = window.trace, window.trace.baseline
    assert a is not None and a.token_ids == b.token_ids
    assert window.diff_strip.isVisible() and window.view_bar.compare_action.isVisible()
    t = len(b) - 2
    window.view.update(cursor=t, layer=LAYER, head=HEAD, follow=False)
    window.compare_actions.mode_actions["diff"].trigger()  # View -> Show B - A
    assert window.view.state.compare == "diff"
    window.redraw()
    panels = window.panels
    assert isinstance(panels["heads"], HeadGridDiffPanel)
    assert isinstance(panels["distribution"], PlaceholderPanel)
    expected = (b.attention_matrix(LAYER, HEAD) - a.attention_matrix(LAYER, HEAD))[: t + 1, : t + 1]
    np.testing.assert_array_equal(panels["attention"].heatmap.data, expected)
    rows = b.attention_rows_at(t).astype(np.float32) - a.attention_rows_at(t).astype(np.float32)
    np.testing.assert_array_equal(panels["heads"].rows, rows)
    assert "B \u2212 A" in panels["attention"].figure_title(window.view.state)
    assert panels["compare"].trace is b  # the compare panel always reads B and its baseline
    # the diff strip: B - A of log p of the next token, the traces' own numbers
    strip = window.diff_strip.strip
    np.testing.assert_array_equal(strip.diff, b.array("target_logprob") - a.array("target_logprob"))
    assert "B \u2212 A" in strip.tooltip_text(0) and f"{strip.diff[0]:+.4f}" in strip.tooltip_text(0)
    assert strip.colour_of(len(b) - 1) is None  # the last step has no next token
    # A: A's numbers; B again: B's numbers
    window.view_bar.compare_combo.setCurrentIndex(window.view_bar.compare_combo.findData("a"))
    window.redraw()
    np.testing.assert_array_equal(
        panels["attention"].heatmap.data, a.attention_matrix(LAYER, HEAD)[: t + 1, : t + 1]
    )
    assert type(window.panels["heads"]) is HeadGridPanel
    assert window.panels["attention"].figure_title(window.view.state).split(" - ")[1].endswith("(A)")
    window.compare_actions.set_mode("b")
    window.redraw()
    np.testing.assert_array_equal(
        window.panels["attention"].heatmap.data, b.attention_matrix(LAYER, HEAD)[: t + 1, : t + 1]
    )
    assert window.panels["attention"].heatmap.cmap_name == colormaps.SEQUENTIAL
    # clearing: the plain view, no strip, no baseline
    window.compare_actions.mode_actions["diff"].trigger()
    window.compare_actions.clear()
    window.redraw()
    assert window.view.state.compare == "b" and window.trace.baseline is None
    assert not window.diff_strip.isVisible() and not window.view_bar.compare_action.isVisible()
    assert type(window.panels["heads"]) is HeadGridPanel and "compare" not in window.panels
    np.testing.assert_array_equal(
        window.panels["attention"].heatmap.data, b.attention_matrix(LAYER, HEAD)[: t + 1, : t + 1]
    )


def test_a_new_run_leaves_no_stale_comparison(make_window, qtbot, saved_pair):
    window = compare_in_window(make_window, qtbot, saved_pair)
    window.compare_actions.set_mode("diff")
    window.open_trace(saved_pair[1])  # another run on screen (a reset or a model switch alike)
    window.redraw()
    assert window.trace.baseline is None and window.view.state.compare == "b"
    assert not window.compare_actions.active() and not window.diff_strip.isVisible()
    assert type(window.panels["heads"]) is HeadGridPanel
    assert not window.compare_actions.set_mode("diff")  # nothing to compare: refused in one line
    assert "nothing to compare" in window.compare_actions.last_error


def test_other_tokens_are_refused_in_one_line(make_window, qtbot, runs, saved_pair, tmp_path):
    window = make_window()
    window.open_trace(saved_pair[1])
    path = runs["lstm_a"].save(tmp_path / "lstm.memviz")
    job = window.compare_actions.compare_with(path)
    qtbot.waitUntil(lambda: job.ended, timeout=10_000)
    qtbot.waitUntil(lambda: bool(window.compare_actions.last_error), timeout=5_000)
    assert "different tokens" in window.compare_actions.last_error
    assert "\n" not in window.compare_actions.last_error
    assert window.trace.baseline is None and not window.diff_strip.isVisible()


def test_exports_in_b_minus_a_say_so(make_window, qtbot, saved_pair, tmp_path):
    from memviz.export.data import read_csv_values

    window = compare_in_window(make_window, qtbot, saved_pair)
    b, a = window.trace, window.trace.baseline
    actions = window.compare_actions
    state = window.view.state
    t = len(b) - 1
    window.view.update(cursor=t, layer=LAYER, head=HEAD, follow=False)
    actions.set_mode("diff")
    state = window.view.state
    header, rows = read_csv_values(actions.export_csv(tmp_path / "d.csv", "attention", state))
    assert header[:2] == ["query_step", "query_token"] and all(h.startswith("B-A ") for h in header[2:])
    values = np.array([[float(v) for v in row[2:]] for row in rows])
    np.testing.assert_allclose(
        values, b.attention_matrix(LAYER, HEAD) - a.attention_matrix(LAYER, HEAD), atol=1e-7
    )
    panel = window.panels["attention"]
    out = actions.export_figure(panel, tmp_path / "d.svg", state, size=(600, 400))
    assert "B \u2212 A" in out.read_text(encoding="utf-8")  # the title
    with pytest.raises(Exception, match="no difference"):
        actions.export_csv(tmp_path / "k.csv", "topk", state)
    actions.set_mode("b")
    header, _rows = read_csv_values(actions.export_csv(tmp_path / "b.csv", "attention", window.view.state))
    assert not any(h.startswith("B-A") for h in header)


def test_difference_levels_are_symmetric_and_zero_reads_as_zero():
    from memviz.panels.scales import ColourScale

    a_trace = Trace(model={"name": "m", "architecture": "gpt2"})
    d = TraceDiff(a_trace, a_trace)
    scale = ColourScale((0.0, 1.0), "attention")
    scale.begin("stable", 0, d)
    assert scale.levels(None, np.zeros((3, 3))) == (-1.0, 1.0)  # no difference: the quantity's width
    assert scale.levels(None, np.array([[0.03, -0.07]])) == (-0.1, 0.1)
    assert scale.levels(None, np.array([[0.01]])) == (-0.1, 0.1)  # stable: only grows
    scale.begin("step", 0, d)
    assert scale.levels(None, np.array([[0.01]])) == (-0.01, 0.01)
    scale.begin("fixed", 0, d)
    assert scale.levels((0.0, 1.0), np.array([[0.01]])) == (-1.0, 1.0)
    scale.begin("stable", 0, a_trace)  # back to a run: its own levels
    assert scale.levels(None) == (0.0, 1.0)


def test_an_interventions_baseline_is_compared_alike_and_a_model_switch_ends_it(
    make_window, qtbot, gpt2_dir, lstm_dir
):
    from tests.test_app_interventions import load_and_read, wait_reread

    window = make_window()
    load_and_read(qtbot, window, gpt2_dir)
    a = window.trace
    window.compare_actions.set_mode("diff")  # nothing to compare yet: refused, B stays
    assert window.view.state.compare == "b"
    assert window.intervene_actions.intervene("head:1.0=zero")
    wait_reread(qtbot, window, a)
    b = window.trace
    assert b.baseline is a and window.compare_actions.active()
    assert window.diff_strip.isVisible()
    assert window.compare_actions.set_mode("diff")
    t = len(b) - 2
    window.view.update(cursor=t, layer=LAYER, head=HEAD, follow=False)
    window.redraw()
    expected = (b.attention_matrix(LAYER, HEAD) - a.attention_matrix(LAYER, HEAD))[: t + 1, : t + 1]
    np.testing.assert_array_equal(window.panels["attention"].heatmap.data, expected)
    np.testing.assert_array_equal(
        window.diff_strip.strip.diff, b.array("target_logprob") - a.array("target_logprob")
    )
    # another model: nothing of the comparison stays
    window.load_model(str(lstm_dir))
    qtbot.waitUntil(lambda: window.info is not None and window.info.architecture == "lstm", timeout=60_000)
    qtbot.waitUntil(lambda: window.trace is not b, timeout=10_000)
    window.redraw()
    assert window.view.state.compare == "b" and not window.compare_actions.active()
    assert window.trace.baseline is None and not window.diff_strip.isVisible()
    assert not any(isinstance(p, PlaceholderPanel) for p in window.panels.values())


def test_the_apps_own_export_renders_what_the_panels_show(make_window, qtbot, saved_pair, tmp_path):
    """File -> Export and a panel's right-click Export go through ExportActions: in B - A they write
    the difference, saying so; back in B, B's own numbers."""
    from memviz.export.data import read_csv_values

    window = compare_in_window(make_window, qtbot, saved_pair)
    b, a = window.trace, window.trace.baseline
    window.view.update(cursor=len(b) - 1, layer=LAYER, head=HEAD, follow=False)
    window.compare_actions.set_mode("diff")
    export = window.export_actions
    header, rows = read_csv_values(export.export_csv(tmp_path / "d.csv", "attention"))
    assert all(h.startswith("B-A ") for h in header[2:])
    values = np.array([[float(v) for v in row[2:]] for row in rows])
    np.testing.assert_allclose(
        values, b.attention_matrix(LAYER, HEAD) - a.attention_matrix(LAYER, HEAD), atol=1e-7
    )
    out = export.export_figure(window.panels["attention"], tmp_path / "d.svg")
    assert "B \u2212 A" in out.read_text(encoding="utf-8")
    window.compare_actions.set_mode("b")
    header, rows = read_csv_values(export.export_csv(tmp_path / "b.csv", "attention"))
    assert not any(h.startswith("B-A") for h in header)
    values = np.array([[float(v) for v in row[2:]] for row in rows])
    np.testing.assert_allclose(values, b.attention_matrix(LAYER, HEAD), atol=1e-7)
    out = export.export_figure(window.panels["attention"], tmp_path / "b.svg")
    assert "B \u2212 A" not in out.read_text(encoding="utf-8")
