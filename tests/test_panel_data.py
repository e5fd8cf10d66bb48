"""Every panel shows the trace's own numbers: what it displays, read back, equals the trace at the cursor.

For each panel class a checker reads back what the panel draws (the values and levels each heatmap
was given and the pixels coloured from them, the head grid's bars from its image, the distribution's
bars, the memory rows) and compares them with the trace, computed here independently where the trace
only stores the inputs (retention from the forget gates, distances from the dense attention). Each
checker is shown to fail on a trace with one value at the cursor changed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from memviz.core.trace import Trace
from memviz.memory.store import MemoryStore
from memviz.panels import colormaps
from memviz.panels.attention import AttentionPanel
from memviz.panels.compare_strip import CompareStripPanel
from memviz.panels.distribution import DistributionPanel
from memviz.panels.head_distance import HeadDistancePanel
from memviz.panels.head_grid import HeadGridPanel, bar_heights, binned_max
from memviz.panels.heatmap import Heatmap, candidate_text, colour, native_lookup_table
from memviz.panels.logit_lens import LogitLensPanel
from memviz.panels.lstm_gates import GatesPanel
from memviz.panels.lstm_span import SpanPanel
from memviz.panels.lstm_state import StatePanel
from memviz.panels.match import MatchPanel, publish
from memviz.panels.memory_panel import CANDIDATES, MemoryPanel
from memviz.panels.prediction import PredictionPanel
from memviz.panels.recurrent_info import gates_of
from memviz.panels.registry import PANEL_CLASSES

LAYER, HEAD, UNIT = 1, 2, 5


@pytest.fixture(scope="module")
def traces(run_session, lstm_dir, gpt2_dir, rnn_dir_factory, tmp_path_factory) -> dict[str, Trace]:
    """A real LSTM run recalling from a real store, a real GPT-2 run (one with the logit lens, one with
    head 1.0 ablated and the plain run as its baseline) and a real classifier's run (an LSTM of layers
    9, 5, 7, three labels); saved and loaded back."""
    from memviz.backends.registry import load_backend
    from memviz.core.interventions import parse_all
    from memviz.core.session import RecallSettings

    folder = tmp_path_factory.mktemp("panel-data")
    backend = load_backend(str(lstm_dir))
    store = MemoryStore.open(folder / "m.sqlite", backend=backend, create=True)
    store.add_document("The quick brown fox jumps over the lazy dog.\n", "fox.txt", backend)
    lstm = run_session(
        backend, text="The quick brown fox", generate=3, memory=store, recall=RecallSettings(k=5)
    )
    gpt2 = run_session(gpt2_dir, generate=4, dense_attention=True)  # perturbed: its dense rows
    lens = run_session(gpt2_dir, generate=4, logit_lens=True)
    ablated = run_session(gpt2_dir, interventions=parse_all(["head:1.0=zero"]))
    plain = run_session(gpt2_dir)
    # an LSTM: a GRU trace does not load yet (core.trace_check expects four gates)
    classifier_dir = rnn_dir_factory(
        folder / "classifier", cell="lstm", head="classifier", labels=("negative", "neutral", "positive")
    )
    classifier = run_session(classifier_dir, text="The quick brown fox jumps over the lazy dog.")
    out = {
        "lstm": Trace.load(lstm.trace.save(folder / "lstm.memviz")),
        "gpt2": Trace.load(gpt2.trace.save(folder / "gpt2.memviz")),
        "lens": Trace.load(lens.trace.save(folder / "lens.memviz")),
        "classifier": Trace.load(classifier.trace.save(folder / "classifier.memviz")),
        "compare": Trace.load(ablated.trace.save(folder / "ablated.memviz")),
    }
    out["compare"].baseline = Trace.load(plain.trace.save(folder / "plain.memviz"))
    store.close()
    return out


# -- reading back ------------------------------------------------------------------------------------
def shown(heatmap: Heatmap) -> np.ndarray:
    """The values a heatmap shows, after checking its pixels are exactly those values coloured."""
    rows, cols = heatmap.data.shape
    assert heatmap.image.cells == (rows, cols)
    pixels = heatmap.image.buffer[:rows, :cols]
    expected = colour(heatmap.data, heatmap.levels, native_lookup_table(heatmap.cmap_name))
    np.testing.assert_array_equal(pixels, expected)
    return heatmap.data


def check_gates(panel, trace: Trace, t: int) -> None:
    gates = trace.array("gates")
    for index, heatmap in enumerate(panel.heatmaps):
        np.testing.assert_array_equal(shown(heatmap), gates[: t + 1, LAYER, index].T)
        assert heatmap.levels == gates_of(trace)[index].levels


def check_state(panel, trace: Trace, t: int) -> None:
    for key in ("cell", "hidden"):
        column = trace.array(key)
        np.testing.assert_array_equal(shown(panel.heatmaps[key]), column[: t + 1, LAYER].T)
        np.testing.assert_array_equal(panel.curves[key].yData, column[: t + 1, LAYER, UNIT])
        peak = max(float(np.percentile(np.abs(column[s, LAYER]), 98)) for s in range(len(trace)))
        level = colormaps.symmetric_level(np.array([peak]))
        level = min(level, 1.0) if key == "hidden" else level
        assert panel.heatmaps[key].levels == (-level, level)


def check_span(panel, trace: Trace, t: int) -> None:
    f = trace.array("gates")[: t + 1, LAYER, 1].astype(np.float64)  # [t+1, H]
    retention = np.ones((f.shape[1], t + 1))
    for s in range(t + 1):  # R_t[u, s] = prod_{r=s+1..t} f_r[u]
        retention[:, s] = np.prod(f[s + 1 : t + 1], axis=0)
    np.testing.assert_allclose(shown(panel.heatmap), retention, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(panel.bars.opts["height"], retention.sum(axis=1), rtol=1e-9)
    np.testing.assert_array_equal(panel.bars.opts["x"], np.arange(f.shape[1]))


def check_attention(panel, trace: Trace, t: int) -> None:
    dense = trace.attention_tensor()
    np.testing.assert_array_equal(shown(panel.heatmap), dense[LAYER, HEAD, : t + 1, : t + 1])
    np.testing.assert_array_equal(panel.heatmap.data, trace.attention_matrix(LAYER, HEAD, stop=t + 1))
    assert panel.heatmap.levels == (0.0, 1.0)


def check_heads(panel, trace: Trace, t: int, read_bars: Callable) -> None:
    dense = trace.attention_tensor()
    np.testing.assert_array_equal(panel.rows, dense[:, :, t, : t + 1])
    values, _ = binned_max(dense[:, :, t, : t + 1].astype(np.float32), panel.bins)
    if values.shape[-1] < panel.bins:  # a short row spreads each key over several columns
        values = values[..., (np.arange(panel.bins) * values.shape[-1]) // panel.bins]
    np.testing.assert_array_equal(read_bars(panel), bar_heights(values, panel.levels))


def check_distance(panel, trace: Trace, t: int) -> None:
    dense = trace.attention_tensor().astype(np.float64)
    q = np.arange(t + 1)[:, None]
    back = (q - np.arange(t + 1)[None, :]).clip(min=0)
    expected = (dense[:, :, : t + 1, : t + 1] * back).sum(axis=(2, 3)) / (t + 1)
    np.testing.assert_allclose(shown(panel.heatmap), expected, rtol=1e-5)
    # the stable scale (the default): the widest of the steps' own scales, steps 0..t played in order
    tops = []
    for s in range(t + 1):
        mean = (dense[:, :, : s + 1, : s + 1] * back[: s + 1, : s + 1]).sum(axis=(2, 3)) / (s + 1)
        tops.append(colormaps.nice_ceiling(max(float(mean.max()), 1.0)))
    assert panel.heatmap.levels == (0.0, max(tops))


def check_distribution(panel, trace: Trace, t: int) -> None:
    ids, probs = trace.array("topk_ids")[t], trace.array("topk_probs")[t]
    np.testing.assert_array_equal(panel.bars.opts["width"], probs)
    np.testing.assert_array_equal(panel.bars.opts["y"], np.arange(len(probs)))
    assert panel.labels == [trace.text_of(i) for i in ids]
    rank = int(np.flatnonzero(ids == trace.token_ids[t + 1])[0])  # the test runs read known tokens
    np.testing.assert_array_equal(panel.actual_bar.opts["width"], [probs[rank]])
    np.testing.assert_array_equal(panel.actual_bar.opts["y"], [rank])


def check_memory(panel, trace: Trace, t: int) -> None:
    ids, scores = trace.array("memory_ids")[t], trace.array("memory_scores")[t]
    valid = ids >= 0
    assert [r[0] for r in panel.rows] == ids[valid].tolist()
    np.testing.assert_array_equal([r[1] for r in panel.rows], scores[valid])
    assert [r[3] for r in panel.rows] == [trace.memory_record(i) for i in ids[valid]]
    assert all(r[3] is not None for r in panel.rows)  # a run with a store saves every record
    titles = []
    for title, shown_ids, shown_probs in panel.columns:
        titles.append(title)
        key = {"model  p_LM": "lm_topk", "memory  p_kNN": "knn_topk", "mix  p": "topk"}[title]
        np.testing.assert_array_equal(shown_ids, trace.array(f"{key}_ids")[t][:CANDIDATES])
        np.testing.assert_array_equal(shown_probs, trace.array(f"{key}_probs")[t][:CANDIDATES])
        assert [panel.token_text(int(i)) for i in shown_ids] == [
            candidate_text(trace, int(i)) for i in shown_ids
        ]
    assert titles == ["model  p_LM", "memory  p_kNN", "mix  p"]


def check_prediction(panel, trace: Trace, t: int) -> None:
    prediction = trace.array("prediction")  # [T, C]: after each step, every label's probability
    np.testing.assert_array_equal(panel.values, prediction)
    assert len(panel.curves) == prediction.shape[1]
    for k, curve in enumerate(panel.curves):
        np.testing.assert_array_equal(curve.yData, prediction[:, k])
        np.testing.assert_array_equal(curve.xData, np.arange(len(prediction)) + 0.5)
    assert panel.cursor_line.value() == t + 0.5


def check_lens(panel, trace: Trace, t: int) -> None:
    target = trace.array("lens_target_prob")  # [T, L]: p of the next token after each layer
    np.testing.assert_array_equal(shown(panel.heatmap), target[: t + 1].T)
    assert panel.heatmap.levels == (0.0, 1.0)
    assert panel.heatmap.cursor_col == t


def check_compare(panel, trace: Trace, t: int) -> None:
    baseline = trace.baseline or panel.trace.baseline  # a perturbed copy has none: the shown one's
    a, b = baseline.array("target_logprob"), trace.array("target_logprob")
    assert len(a) == len(b) == len(trace)
    np.testing.assert_array_equal(panel.logp_a, a)
    np.testing.assert_array_equal(panel.logp_b, b)
    np.testing.assert_array_equal(panel.diff, b - a)
    np.testing.assert_array_equal(panel.curve_b.yData, b)
    known = ~np.isnan(b - a)
    np.testing.assert_array_equal(panel.bars.opts["height"][known], (b - a)[known])
    assert panel.cursor_lines[1].value() == t


def check_match(panel, trace: Trace, t: int) -> None:
    from memviz.core.search import Query, search

    if panel.result is None:  # the app publishes a search's matches for the run it searched
        publish(panel.trace, search(panel.trace, Query(layer=LAYER, start=t - 3, end=t, top=5)))
        panel.render(panel.view.state)
    states = trace.array("hidden")[:, LAYER].astype(np.float64)
    query = states[t - 3 : t + 1]
    distances = sorted(  # every span of 4 steps apart from the query's, by hand
        (float(np.sqrt(((states[s : s + 4] - query) ** 2).sum())), s)
        for s in range(len(states) - 3)
        if s + 3 < t - 3 or s > t
    )
    chosen: list[tuple[int, float]] = []
    for d, s in distances:
        if len(chosen) < 5 and all(s + 3 < c or s > c + 3 for c, _ in chosen):
            chosen.append((s, d))
    assert [m.start for m in panel.result.matches] == [s for s, _ in chosen]
    np.testing.assert_allclose([m.distance for m in panel.result.matches], [d for _, d in chosen], rtol=1e-6)
    assert [panel.table.item(r, 1).text() for r in range(panel.table.rowCount())] == [
        f"{s}-{s + 3}" for s, _ in chosen
    ]


# panel class -> (trace, checker, (key, index) of one value at the cursor t that the panel shows)
CHECKS: dict[type, tuple[str, Callable, Callable[[int], tuple[str, tuple]]]] = {
    GatesPanel: ("lstm", check_gates, lambda t: ("gates", (t, LAYER, 2, UNIT))),
    StatePanel: ("lstm", check_state, lambda t: ("cell", (t, LAYER, UNIT))),
    SpanPanel: ("lstm", check_span, lambda t: ("gates", (t, LAYER, 1, UNIT))),
    AttentionPanel: ("gpt2", check_attention, lambda t: ("attention", (LAYER, HEAD, t, 0))),
    HeadGridPanel: ("gpt2", check_heads, lambda t: ("attention", (0, 3, t, t))),
    HeadDistancePanel: ("gpt2", check_distance, lambda t: ("attention", (2, 0, t, 0))),
    DistributionPanel: ("lstm", check_distribution, lambda t: ("topk_probs", (t, 1))),
    MemoryPanel: ("lstm", check_memory, lambda t: ("memory_scores", (t, 0))),
    PredictionPanel: ("classifier", check_prediction, lambda t: ("prediction", (t, 1))),
    # layer 0: a tiny model's early guess is far below 1 - 0.375, so the changed trace still loads
    LogitLensPanel: ("lens", check_lens, lambda t: ("lens_target_prob", (t, 0))),
    CompareStripPanel: ("compare", check_compare, lambda t: ("target_logprob", (t,))),
    MatchPanel: ("lstm", check_match, lambda t: ("hidden", (t, LAYER, UNIT))),
}


def test_every_panel_has_a_check():
    assert set(CHECKS) == set(PANEL_CLASSES)


def perturbed(trace: Trace, key: str, index: tuple) -> Trace:
    arrays = {k: v.copy() for k, v in trace.to_arrays().items()}
    arrays[key][index] += 0.375  # exact in float16 and float32
    return Trace.from_arrays(arrays)


@pytest.mark.parametrize("cls", PANEL_CLASSES, ids=lambda c: c.name)
def test_what_a_panel_shows_is_the_trace(cls, traces, make_panel, head_grid_bar_heights):
    kind, check, change = CHECKS[cls]
    trace = traces[kind]
    t = len(trace) - 4
    # play up to the cursor, one step at a time, as the app does (the incremental paths run)
    view, panel = make_panel(cls, trace, cursor=0, layer=LAYER, head=HEAD, unit=UNIT)
    for cursor in range(1, t + 1):
        view.update(cursor=cursor)

    def run_check(against: Trace) -> None:
        if cls is HeadGridPanel:
            check(panel, against, t, head_grid_bar_heights)
        else:
            check(panel, against, t)

    run_check(trace)
    with pytest.raises(AssertionError):
        run_check(perturbed(trace, *change(t)))
