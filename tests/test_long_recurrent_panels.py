"""The LSTM panels and the token strip on a run of 50,000 steps (issue 16, item 4).

The trace is a real torch nn.LSTM (2 layers of 12 units) reading 50,000 characters: its hidden
states come from nn.LSTM itself, its gates and cells are recomputed from its weights (checked:
h = o * tanh(c) equals nn.LSTM's output). The panels draw the whole run 0..t in bins of a power of
two steps; what they show is checked against numpy references written here (mean, min and max
over the bins, the retention products, the memory length's recurrence), hovers against the
trace's own numbers, scrubbing to the end and back, and the strip's boxes against a plain
token-by-token reference of its wrapping rules.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QApplication

from memviz.core.trace import KEPT_CANDIDATES, StepRecord, Trace
from memviz.core.view import ViewState
from memviz.panels.lstm_gates import GatesPanel
from memviz.panels.lstm_span import SpanPanel
from memviz.panels.lstm_state import StatePanel
from memviz.panels.step_pool import RetentionPool, StepPool, bin_size
from memviz.panels.view_model import ViewModel

T = 50_000
LAYERS, HIDDEN = 2, 12
WORDS = ("the ", "cat ", "sat ", "on ", "a ", "mat", ".\n", "unbelievably", "long ", "  ", "x")


def lstm_model() -> dict:
    return {
        "name": "nn-lstm-2x12",
        "source": "test",
        "architecture": "lstm",
        "kind": "recurrent",
        "cell": "lstm",
        "num_layers": LAYERS,
        "num_heads": 0,
        "hidden_size": HIDDEN,
        "vocab_size": 64,
        "context_size": None,
    }


def run_lstm(n: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(token texts, gates [n, L, 4, H], cell [n, L, H], hidden [n, L, H]) of a real nn.LSTM."""
    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    texts = [WORDS[i] for i in rng.integers(0, len(WORDS), n)]
    ids = torch.tensor([WORDS.index(t) for t in texts])
    embed = torch.nn.Embedding(64, 8)
    lstm = torch.nn.LSTM(8, HIDDEN, LAYERS)
    with torch.no_grad():
        for name, p in lstm.named_parameters():  # forget gates near 1: units that remember long
            if name.startswith("bias_ih"):
                p[HIDDEN : 2 * HIDDEN] += torch.linspace(0.0, 6.0, HIDDEN)
        x = embed(ids)[:, None, :]  # [n, 1, E]
        out_layers, gates, cells = [], [], []
        for layer in range(LAYERS):
            w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
            b = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
            single = torch.nn.LSTM(x.shape[-1], HIDDEN, 1)
            single.load_state_dict(
                {
                    "weight_ih_l0": w_ih,
                    "weight_hh_l0": w_hh,
                    "bias_ih_l0": getattr(lstm, f"bias_ih_l{layer}"),
                    "bias_hh_l0": getattr(lstm, f"bias_hh_l{layer}"),
                }
            )
            h, _ = single(x)  # [n, 1, H]: nn.LSTM's own hidden states
            h_prev = torch.cat([torch.zeros(1, 1, HIDDEN), h[:-1]])
            pre = (x @ w_ih.T + h_prev @ w_hh.T + b)[:, 0]  # [n, 4H]: every step at once (h known)
            i, f, g, o = pre.chunk(4, dim=-1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            written = (i * g).numpy().astype(np.float64)
            kept = f.numpy().astype(np.float64)
            c = np.empty_like(written)
            state = np.zeros(HIDDEN)
            for t in range(n):  # c_t = f_t c_{t-1} + i_t g_t
                state = kept[t] * state + written[t]
                c[t] = state
            np.testing.assert_allclose(o.numpy() * np.tanh(c), h[:, 0].numpy(), atol=2e-5)
            out_layers.append(h[:, 0].numpy())
            gates.append(torch.stack([i, f, g, o], dim=1).numpy())
            cells.append(c.astype(np.float32))
            x = h
    return texts, np.stack(gates, 1), np.stack(cells, 1), np.stack(out_layers, 1)


@pytest.fixture
def make_shown(make_panel):
    """make_panel, then the panel's first read of the run done (the gates' four heatmaps read
    50,000 x 12 x 4 numbers: past ON_UI, that is the panel's worker's)."""

    def make(cls, trace: Trace, **state):
        view, panel = make_panel(cls, trace, **state)
        assert panel.wait_for_work()
        return view, panel

    return make


@pytest.fixture(scope="module")
def long_run() -> Trace:
    texts, gates, cells, hidden = run_lstm(T)
    trace = Trace(lstm_model())
    probs = np.full(KEPT_CANDIDATES, 1.0 / KEPT_CANDIDATES, np.float32)
    candidates = np.arange(KEPT_CANDIDATES)
    for t in range(T):
        internals = {"gates": gates[t], "cell": cells[t], "hidden": hidden[t]}
        trace.append(StepRecord(WORDS.index(texts[t]), texts[t], t >= T - 100, candidates, probs, internals))
    return trace


def pooled_reference(x: np.ndarray, b: int, reduce=np.mean) -> np.ndarray:
    """x [n, ...] over bins of b steps (the last one partial), in float64, one bin at a time."""
    return np.stack([reduce(x[i : i + b].astype(np.float64), axis=0) for i in range(0, len(x), b)])


def memory_length(f: np.ndarray) -> np.ndarray:
    """sum_s prod_{r=s+1..t} f_r by its recurrence: span_t = f_t span_{t-1} + 1."""
    span = np.zeros(f.shape[1])
    for row in f.astype(np.float64):
        span = row * span + 1.0
    return span


def test_the_pools_equal_a_plain_reference_at_every_length():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5000, 3)).astype(np.float32)
    pool = StepPool(lambda lo, hi: x[lo:hi], 3, ("sum", "min", "max"), cap=64)
    for n in (1, 63, 64, 65, 128, 1000, 4097, 5000, 4100, 5000, 4999, 300, 2, 4097):  # growing, scrubs
        b = bin_size(n, 64)
        assert -(-n // b) <= 64 and (b == 1 or -(-n // (b // 2)) > 64)
        for stat, reduce in (("sum", np.mean), ("min", np.min), ("max", np.max)):
            got, got_b = pool.pooled(n, stat)
            assert got_b == b
            np.testing.assert_allclose(got, pooled_reference(x[:n], b, reduce), rtol=1e-5, atol=1e-6)
    f = rng.uniform(0.8, 1.0, (3000, 4)).astype(np.float32)
    retention = RetentionPool(lambda lo, hi: f[lo:hi], 4, cap=64)
    for n in (1, 64, 65, 3000, 777):
        means, span, b = retention.pooled(n)
        t = n - 1
        kept = np.array([np.prod(f[s + 1 : t + 1].astype(np.float64), axis=0) for s in range(n)])
        np.testing.assert_allclose(span, memory_length(f[:n]), rtol=1e-9)
        np.testing.assert_allclose(means.T, pooled_reference(kept, b), rtol=1e-5, atol=1e-30)
        for unit, s in ((0, 0), (3, t // 2), (2, t)):
            np.testing.assert_allclose(retention.exact(unit, s, t), kept[s, unit], rtol=1e-9)


def test_state_panel_at_50000_steps_shows_the_trace(make_shown, long_run):
    trace = long_run
    view, panel = make_shown(StatePanel, trace, cursor=T - 1, layer=1, unit=3)
    b = bin_size(T)
    assert b == 64
    for key in ("cell", "hidden"):
        column = trace.array(key)[:, 1]
        heatmap = panel.heatmaps[key]
        assert heatmap.bin_steps == b and heatmap.data.shape == (HIDDEN, -(-T // b))
        np.testing.assert_allclose(heatmap.data.T, pooled_reference(column, b), rtol=1e-5, atol=1e-6)
        assert heatmap.view_extent == (HIDDEN, T)  # the whole run, in steps
        # a hover names a step and gives the trace's own value there, not its bin's mean
        for step in (0, 12_345, T - 1):
            pos = heatmap.scene_pos_of(5, step)
            assert heatmap.cell_at_scene(pos) == (5, step)
            assert heatmap.value_at(5, step) == float(column[step, 5])
            assert f"{float(column[step, 5]):.6f}" in heatmap.tooltip_at(5, step)
        # the line: each bin's min and max of the selected unit
        x, y = panel.curves[key].xData, panel.curves[key].yData
        low, high = pooled_reference(column[:, 3], b, np.min), pooled_reference(column[:, 3], b, np.max)
        np.testing.assert_allclose(y[0::2], low, rtol=1e-6)
        np.testing.assert_allclose(y[1::2], high, rtol=1e-6)
        assert x[0] == b / 2 and x[-1] == ((T // b) * b + T) / 2
    assert panel.heatmaps["cell"].cursor_line.value() == T - 0.5
    assert f"step {T - 1}" in panel.note.text()


def test_gates_and_span_at_50000_steps(make_shown, long_run):
    trace = long_run
    gates = trace.array("gates")
    b = bin_size(T)
    _, panel = make_shown(GatesPanel, trace, cursor=T - 1, layer=0)
    for index, heatmap in enumerate(panel.heatmaps):
        np.testing.assert_allclose(
            heatmap.data.T, pooled_reference(gates[:, 0, index], b), rtol=1e-5, atol=1e-6
        )
        assert heatmap.value_at(7, 40_000) == float(gates[40_000, 0, index, 7])
    _, span = make_shown(SpanPanel, trace, cursor=T - 1, layer=1)
    f = gates[:, 1, 1]
    np.testing.assert_allclose(span.span, memory_length(f), rtol=1e-9)
    assert span.heatmap.bin_steps == b
    # the overview: the mean over each bin of prod f from s+1 to t (computed here bin by bin)
    t = T - 1
    log_f = np.log(f.astype(np.float64))
    suffix = np.cumsum(log_f[::-1], axis=0)[::-1]  # sum_{r >= s} log f_r
    kept = np.exp(np.vstack([suffix[1:], np.zeros((1, HIDDEN))]))  # prod_{r=s+1..t} f_r
    np.testing.assert_allclose(span.retention.T, pooled_reference(kept, b), rtol=1e-4, atol=1e-20)
    for s in (0, 49_000, 49_990, t):
        exact = float(np.prod(f[s + 1 : t + 1, 11].astype(np.float64)))
        np.testing.assert_allclose(span.heatmap.value_at(11, s), exact, rtol=1e-9, atol=1e-300)


def test_scrubbing_to_the_end_and_back(qtbot, make_shown, long_run, settle):
    trace = long_run
    view, panel = make_shown(StatePanel, trace, cursor=T - 1, layer=0, unit=2)
    cell = trace.array("cell")[:, 0]
    for cursor in (40, 5_000, T - 1, 1_023, 1_024, 31_000, T - 1, 0):
        view.update(cursor=cursor, follow=False)
        settle(panel)
        n = cursor + 1
        b = bin_size(n)
        heatmap = panel.heatmaps["cell"]
        assert (panel.step, heatmap.bin_steps, heatmap.steps) == (cursor, b, n)
        assert heatmap.cursor_line.value() == cursor + 0.5
        if b == 1:  # up to 1024 steps: the trace's own numbers, a column a step
            np.testing.assert_array_equal(heatmap.data, cell[:n].T)
        else:
            np.testing.assert_allclose(heatmap.data.T, pooled_reference(cell[:n], b), rtol=1e-5, atol=1e-6)
        # while steps come quickly the view runs ahead a little; once they stop it ends at the data
        qtbot.waitUntil(lambda n=n, heatmap=heatmap: heatmap.view_extent == (HIDDEN, n), timeout=3_000)
        assert heatmap.value_at(4, cursor) == float(cell[cursor, 4])


def strip_view(qtbot, trace, width: int = 700, **state):
    from memviz.ui.token_strip import TokenStripView

    view = ViewModel(ViewState(**state))
    widget = TokenStripView(view)
    qtbot.addWidget(widget)
    widget.strip.set_trace(trace)
    widget.resize(width, 200)
    widget.show()
    qtbot.waitExposed(widget)
    widget.render(view.state)
    QApplication.processEvents()
    return view, widget


def reference_boxes(texts: list[str], width_of, right: int, margin: int, line_height: int):
    """(x, line, width) of each token laid out one token at a time by the strip's rules."""
    from memviz.ui.token_layout import wrap_before

    boxes: list[list[int]] = []
    x, line, start = margin, 0, 0
    for i, text in enumerate(texts):
        width = width_of(text)
        if x + width > right and x > margin and text.strip() == "" and "\n" not in text:
            width = max(right - x, 1)
        elif x + width > right and x > margin:
            first = wrap_before(texts, start, i)
            x, line = margin, line + 1
            for j in range(first, i):
                boxes[j][0], boxes[j][1] = x, line
                x += boxes[j][2]
            start = first
        boxes.append([x, line, width])
        x += width
        if text.endswith("\n"):
            x, line, start = margin, line + 1, i + 1
    return boxes


def test_token_strip_at_50000_tokens_lays_out_and_shows_the_cursor(qtbot, long_run):
    from memviz.ui.token_signals import display_text

    trace = long_run
    view, widget = strip_view(qtbot, trace, cursor=T - 1, signal="unit", layer=1, unit=0)
    strip = widget.strip
    assert strip.token_count() == T
    texts = [strip._labels[i] for i in range(T)]
    right = max(strip.width(), 200) - strip.MARGIN
    line_height = strip._metrics.height() + 2 * strip.PAD_Y
    boxes = reference_boxes(
        texts, lambda t: strip._text_width(display_text(t)), right, strip.MARGIN, line_height
    )
    for i in list(range(0, 400)) + list(range(T - 400, T)) + list(range(0, T, 997)):
        rect = strip.token_rect(i)
        x, line, width = boxes[i]
        assert (rect.left(), rect.top(), rect.width()) == (x, strip.MARGIN + line * line_height, width), i
    for cursor in (T - 1, 0, 25_000, T - 1):  # scrub to the start, the middle and back
        view.update(cursor=cursor)
        widget.render(view.state)
        QApplication.processEvents()
        rect = strip.token_rect(cursor)
        shown = widget.viewport().rect().translated(0, widget.verticalScrollBar().value())
        assert shown.contains(rect.center()), cursor
        assert strip.index_at(rect.center()) == cursor
        assert strip.index_at(QPoint(rect.left(), rect.bottom())) == cursor
        assert strip.token_marks(cursor)["current"]
        np.testing.assert_array_equal(strip.values(), trace.array("hidden")[:, 1, 0].astype(np.float64))
    image = strip.grab(widget.viewport().rect().translated(0, widget.verticalScrollBar().value())).toImage()
    assert not image.isNull()


def test_token_strip_grows_one_token_at_a_time_as_it_lays_out_whole(qtbot, long_run):
    trace = Trace(lstm_model())
    _, live = strip_view(qtbot, trace, width=300, cursor=0, signal="none")
    source = long_run
    gates, cell, hidden = source.array("gates"), source.array("cell"), source.array("hidden")
    for t in range(600):
        internals = {"gates": gates[t], "cell": cell[t], "hidden": hidden[t]}
        record = StepRecord(
            source.token_ids[t],
            source.token_text[t],
            False,
            np.arange(KEPT_CANDIDATES),
            np.full(KEPT_CANDIDATES, 0.05, np.float32),
            internals,
        )
        trace.append(record)
        live.render(ViewState(signal="none", cursor=t))
    _, whole = strip_view(qtbot, trace, width=300, cursor=599, signal="none")
    assert live.strip.width() == whole.strip.width()
    assert [live.strip.token_rect(i) for i in range(600)] == [whole.strip.token_rect(i) for i in range(600)]


def test_window_boundaries_are_marked_in_the_strip(qtbot, long_run):
    trace = Trace(lstm_model())
    trace.enable_sliding(window=32, stride=16)
    source = long_run
    for t in range(80):
        if t in (32, 48, 64):
            trace.start_window(t, t - 16)
        internals = {
            "gates": source.array("gates")[t],
            "cell": source.array("cell")[t],
            "hidden": source.array("hidden")[t],
        }
        trace.append(
            StepRecord(
                source.token_ids[t],
                source.token_text[t],
                False,
                np.arange(KEPT_CANDIDATES),
                np.full(KEPT_CANDIDATES, 0.05, np.float32),
                internals,
            )
        )
    assert trace.window_boundaries == (32, 48, 64)
    _, widget = strip_view(qtbot, trace, width=500, cursor=0, signal="none", theme="dark")
    strip = widget.strip
    assert strip.window_boundaries() == (32, 48, 64)
    image = strip.grab().toImage()
    accent = ViewState(theme="dark").theme_obj.accent
    for step in (32, 48, 64):
        rect = strip.token_rect(step)
        column = [image.pixelColor(rect.left(), y).name() for y in range(rect.top(), rect.bottom())]
        assert accent.lower() in column, step
    # a run that never slid: no marks, and nothing drawn at a token's left edge in the accent colour
    plain = Trace(lstm_model())
    plain.append(
        StepRecord(
            1,
            "a",
            False,
            np.arange(KEPT_CANDIDATES),
            np.full(KEPT_CANDIDATES, 0.05, np.float32),
            {
                "gates": source.array("gates")[0],
                "cell": source.array("cell")[0],
                "hidden": source.array("hidden")[0],
            },
        )
    )
    assert getattr(plain, "window_boundaries", ()) == ()
    _, other = strip_view(qtbot, plain, width=500, cursor=-1, signal="none")
    assert other.strip.window_boundaries() == ()


def test_a_long_first_read_of_the_span_is_the_workers(make_panel, long_run, monkeypatch):
    """Opening a long run (or another layer) reads every f of the layer once: past SPAN_ON_UI
    numbers that is the panel's worker's; the UI thread returns at once, says what is being built,
    and draws what the worker built, the same as a pool built here in one go."""
    import memviz.panels.pool_jobs as pool_jobs

    trace = long_run

    def direct(layer: int, n: int):
        pool = RetentionPool(lambda lo, hi: trace.array("gates")[lo:hi, layer, 1, :HIDDEN], HIDDEN)
        return pool.pooled(n)

    monkeypatch.setitem(pool_jobs.ON_UI, "span", 1 << 12)  # 50,000 x 12 numbers: the worker's
    view, panel = make_panel(SpanPanel, trace, settle=False, cursor=T - 1, layer=1)
    assert panel.pool_jobs.jobs.busy("pools")
    assert "building layer 1's span over 50,000 steps" in panel.note.text()
    assert panel.heatmap.data.size == 0  # nothing drawn from a half-built pool
    panel.render(view.state)  # asked again while on its way: the same job
    assert panel.wait_for_work()
    assert "building" not in panel.note.text() and f"step {T - 1}" in panel.note.text()
    retention, span, _ = direct(1, T)
    np.testing.assert_array_equal(panel.span, span)
    np.testing.assert_array_equal(panel.retention, retention)
    np.testing.assert_allclose(panel.span, memory_length(trace.array("gates")[:, 1, 1]), rtol=1e-9)
    # a scrub reads a few steps on the UI thread: no new job
    view.update(cursor=T - 500, follow=False)
    assert not panel.pool_jobs.jobs.busy("pools")
    np.testing.assert_array_equal(panel.span, direct(1, T - 499)[1])
    # another layer is another first read
    view.update(layer=0)
    assert panel.pool_jobs.jobs.busy("pools") and "building layer 0's span" in panel.note.text()
    assert panel.wait_for_work()
    retention, span, _ = direct(0, T - 499)
    np.testing.assert_array_equal(panel.retention, retention)
    np.testing.assert_array_equal(panel.span, span)


def test_sorting_by_variance_over_50000_steps(make_shown, long_run):
    """The rows sorted by each unit's variance over steps 0..t (block sums, not a read of the whole
    run at every redraw) come in numpy's order, at the end, after a scrub and in the gates panel."""
    trace = long_run
    view, panel = make_shown(StatePanel, trace, cursor=T - 1, layer=1)
    panel.units.set_sort("variance of c")
    cell = trace.array("cell")[:, 1].astype(np.float64)
    for t in (T - 1, 31_337, 1_023, 0):
        view.update(cursor=t, follow=False)
        want = np.argsort(cell[: t + 1].var(axis=0), kind="stable")
        np.testing.assert_array_equal(panel.units.order, want)
    _, gates_panel = make_shown(GatesPanel, trace, cursor=T - 1, layer=0)
    gates_panel.units.set_sort("variance of f")
    f = trace.array("gates")[:, 0, 1].astype(np.float64)
    np.testing.assert_array_equal(gates_panel.units.order, np.argsort(f.var(axis=0), kind="stable"))


def test_a_long_first_read_of_the_gates_and_states_is_the_workers(make_panel, long_run, monkeypatch):
    """The gates' and the states' heatmaps past ON_UI["sums"] numbers: built on the panel's worker,
    the note says so meanwhile, and then the same pictures as pooling the trace here."""
    import memviz.panels.pool_jobs as pool_jobs

    trace = long_run
    monkeypatch.setitem(pool_jobs.ON_UI, "sums", 1 << 12)
    b = bin_size(T)
    for cls, word in ((GatesPanel, "gates"), (StatePanel, "states")):
        _, panel = make_panel(cls, trace, settle=False, cursor=T - 1, layer=1)
        assert panel.pool_jobs.jobs.busy("pools")
        assert f"building layer 1's {word} over 50,000 steps" in panel.note.text()
        assert panel.wait_for_work()
        assert "building" not in panel.note.text()
        if cls is GatesPanel:
            for index, heatmap in enumerate(panel.heatmaps):
                want = pooled_reference(trace.array("gates")[:, 1, index], b)
                np.testing.assert_allclose(heatmap.data.T, want, rtol=1e-5, atol=1e-6)
        else:
            for key, heatmap in panel.heatmaps.items():
                want = pooled_reference(trace.array(key)[:, 1], b)
                np.testing.assert_allclose(heatmap.data.T, want, rtol=1e-5, atol=1e-6)


def test_a_failed_build_is_one_line_in_the_note(make_panel, long_run, monkeypatch):
    """The worker's build fails (the run's files gone, a full disk): the panel says so in one line
    and keeps its picture; the next render asks again."""
    import memviz.panels.pool_jobs as pool_jobs
    from memviz.panels import step_pool

    monkeypatch.setitem(pool_jobs.ON_UI, "sums", 1 << 12)

    def broken(self, n):
        raise OSError("No space left on device\nmore")

    monkeypatch.setattr(step_pool.StepPool, "prepare", broken)
    view, panel = make_panel(GatesPanel, long_run, settle=False, cursor=T - 1, layer=0)
    assert panel.wait_for_work()
    assert panel.note.text() == "could not build the overview: No space left on device"
    panel.render(view.state)
    assert panel.pool_jobs.jobs.busy("pools")  # asked again
    assert panel.wait_for_work()
