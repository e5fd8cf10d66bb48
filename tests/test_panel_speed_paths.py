"""The fast drawing paths of the head grid and the distribution panels show the trace's own numbers.

The head grid draws every cell into one raster image (no curves); the distribution keeps its axes
still from step to step (candidate texts painted by the rank axis, the probability axis on a few
fixed ranges). These tests read back what is drawn and check it against the trace.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QImage

from memviz.core.trace import StepRecord, Trace
from memviz.panels.distribution import X_RANGES, X_ROOM, DistributionPanel, x_range_for
from memviz.panels.head_grid import HeadGridPanel, binned_max
from memviz.panels.heatmap import show_token

L, A, K = 3, 4, 6


def gpt2_trace(T: int, dtype=np.float32, tops=None, seed: int = 0) -> Trace:
    """A GPT-2 shaped trace: head (0, 0) looks only at key 0, head (1, 2) only at the previous token,
    the others at random keys; step t's best candidate has probability tops[t] when given."""
    rng = np.random.default_rng(seed)
    model = {
        "name": "m",
        "source": "/x/m",
        "architecture": "gpt2",
        "num_layers": L,
        "hidden_size": 8,
        "num_heads": A,
        "vocab_size": 50,
    }
    trace = Trace(model, attention_dtype=dtype)
    for t in range(T):
        row = rng.random((L, A, t + 1)) ** 8
        row[0, 0] = 0.0
        row[0, 0, 0] = 1.0
        row[1, 2] = 0.0
        row[1, 2, max(t - 1, 0)] = 1.0
        row /= row.sum(-1, keepdims=True)
        top = tops[t] if tops is not None else rng.uniform(0.2, 0.9)
        probs = np.linspace(top, top / 10, K).astype(np.float32)
        trace.append(
            StepRecord(
                t,
                "<b>" if t % 5 == 2 else f"tok{t}" if t % 3 else "a" * (t % 17 + 1),
                False,
                rng.integers(0, 50, K),
                probs,
                {"attention_row": row},
            )
        )
    return trace


def columns_of_key(key: int, n: int, bins: int) -> np.ndarray:
    """The bar columns that show key `key` of a row of n keys drawn in `bins` columns."""
    if n > bins:  # bins of neighbouring keys: the one whose range holds the key
        edges = (np.arange(bins) * n) // bins
        return np.array([np.searchsorted(edges, key, side="right") - 1])
    return np.flatnonzero((np.arange(bins) * n) // bins == key)  # a key spread over columns


# -- head grid -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("T", [300, 20])  # rows longer than the columns of a cell, and shorter
def test_head_grid_image_is_the_binned_attention(make_panel, head_grid_bar_heights, dtype, T):
    trace = gpt2_trace(T, dtype)
    t = T - 1
    view, panel = make_panel(HeadGridPanel, trace, cursor=t)
    rows = trace.attention_at(t)
    np.testing.assert_array_equal(panel.rows, rows)
    assert panel.step == t and panel.shape == (L, A)
    bins, levels = panel.bins, panel.levels
    assert 8 <= bins <= 96 and levels >= 4
    assert rows.shape[-1] == T and (T > bins) == (T == 300)  # both cases: more keys than columns, fewer
    drawn = head_grid_bar_heights(panel)
    assert drawn.shape == (L, A, bins)
    # every cell: the column(s) holding its most attended key are filled to that weight's height
    for layer in range(L):
        for head in range(A):
            row = rows[layer, head].astype(np.float32)
            key = int(np.argmax(row))
            expected = max(1, int(np.rint(row[key] * levels)))
            columns = columns_of_key(key, len(row), bins)
            assert len(columns) and (drawn[layer, head, columns] == expected).all(), (layer, head)
            assert drawn[layer, head].max() == expected  # the peak survives, nothing is taller
    # the focused heads: a full-height bar at key 0, and at the previous token
    assert (drawn[0, 0, columns_of_key(0, t + 1, bins)] == levels).all()
    assert (drawn[1, 2, columns_of_key(t - 1, t + 1, bins)] == levels).all()
    assert drawn[0, 0].sum() == levels * len(columns_of_key(0, t + 1, bins))
    # and all of it: the binned max of every cell, rounded to pixel rows, at least 1 where > 0
    values, _ = binned_max(rows.astype(np.float32), bins)
    values = values[..., (np.arange(bins) * values.shape[-1]) // bins]
    np.testing.assert_array_equal(drawn, np.maximum(np.rint(values * levels), values > 0))


def test_head_grid_image_covers_the_grid_and_shows_on_screen(make_panel):
    trace = gpt2_trace(200)
    view, panel = make_panel(HeadGridPanel, trace, cursor=199)
    assert panel.image.mapRectToView(panel.image.boundingRect()) == QRectF(0, 0, A, L)
    # head (0, 0) attends fully to key 0: its first bar column is drawn in the fill colour
    width, mx = panel.cell_size[0], panel.margin[0]
    point = panel.plot.vb.mapViewToScene(QPointF((mx + 0.5) / width, 0.5))
    image = panel.canvas.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    pixel = panel.canvas.mapFromScene(point)
    assert image.pixelColor(pixel).name() == "#dcdcdc"
    empty = panel.canvas.mapFromScene(panel.plot.vb.mapViewToScene(QPointF(0.5, 0.2)))  # above the bars
    assert image.pixelColor(empty).name() != "#dcdcdc"


def test_head_grid_steps_change_only_the_image(make_panel, settle):
    trace = gpt2_trace(120)
    view, panel = make_panel(HeadGridPanel, trace, cursor=60, layer=1, head=2)
    axes = {name: panel.plot.getAxis(name) for name in ("left", "bottom")}
    pictures = {name: axis.picture for name, axis in axes.items()}
    assert all(p is not None for p in pictures.values())
    view_range = panel.plot.vb.viewRange()
    geometry = panel.plot.vb.sceneBoundingRect()
    image = panel.image.pixels
    for t in (61, 90, 119, 30):
        view.update(cursor=t)
        settle(panel)
        assert panel.step == t
        np.testing.assert_array_equal(panel.rows, trace.attention_at(t))
        assert panel.plot.vb.viewRange() == view_range and panel.plot.vb.sceneBoundingRect() == geometry
        assert all(axes[name].picture is pictures[name] for name in axes)  # no tick regeneration
        assert panel.image.pixels.shape == image.shape
    assert panel.selected.rect() == QRectF(2, 1, 1, 1)


def test_head_grid_follows_resizes_and_the_talk_look(make_panel, settle, head_grid_bar_heights):
    trace = gpt2_trace(300)
    view, panel = make_panel(HeadGridPanel, trace, cursor=299)
    small = panel.cell_size
    panel.resize(1400, 800)
    settle(panel)
    assert panel.cell_size[0] > small[0] and panel.cell_size[1] > small[1]
    head_grid_bar_heights(panel)  # consistent with the new geometry
    view.update(theme="talk")
    panel.apply_theme(view.state)
    settle(panel)
    assert panel.pixel == 2
    assert set(np.unique(panel.image.pixels).tolist()) == {0, 0xFF1F3B73}  # transparent, and #1f3b73 opaque
    drawn = head_grid_bar_heights(panel)
    assert (drawn[0, 0, columns_of_key(0, 300, panel.bins)] == panel.levels).all()


# -- distribution ----------------------------------------------------------------------------------
def test_x_range_is_the_smallest_fixed_range_that_fits():
    assert list(X_RANGES) == sorted(X_RANGES) and X_RANGES[-1] == 1.0
    for top in np.linspace(0.0, 1.0, 1001):
        end = x_range_for(float(top))
        assert end in X_RANGES
        if top * X_ROOM <= 1.0:
            assert end >= top * X_ROOM
            smaller = [r for r in X_RANGES if r < end]
            assert not smaller or smaller[-1] < top * X_ROOM
        else:
            assert end == 1.0


def test_distribution_x_range_is_constant_within_a_band(make_panel, settle):
    # steps 0-2: best candidate between 0.0424 and 0.0508 (range 0.06); 3: 0.3 (0.4); 4: 0.045 again
    tops = [0.043, 0.047, 0.0505, 0.3, 0.045, 0.9]
    trace = gpt2_trace(len(tops), tops=tops)
    view, panel = make_panel(DistributionPanel, trace, cursor=0)
    axis = panel.plot.getAxis("bottom")
    first_range = panel.plot.vb.viewRange()[0]
    first_picture = axis.picture
    geometry = panel.plot.vb.sceneBoundingRect()
    assert first_range == pytest.approx([0, 0.06]) and first_picture is not None
    for t in (1, 2):
        view.update(cursor=t)
        settle(panel)
        assert panel.plot.vb.viewRange()[0] == first_range
        assert axis.picture is first_picture  # the probability axis was not redrawn
    view.update(cursor=3)
    settle(panel)
    assert panel.plot.vb.viewRange()[0] == pytest.approx([0, 0.4])
    view.update(cursor=4)  # back in the first band: the same picture, replayed
    settle(panel)
    assert panel.plot.vb.viewRange()[0] == first_range and axis.picture is first_picture
    view.update(cursor=5)
    settle(panel)
    assert panel.plot.vb.viewRange()[0] == pytest.approx([0, 1.0])
    for t in range(len(tops)):  # the layout never moved, whatever the texts' lengths
        view.update(cursor=t)
        settle(panel)
        assert panel.plot.vb.sceneBoundingRect() == geometry
        assert panel.plot.vb.viewRange()[1] == pytest.approx([-0.6, K - 0.4])


@pytest.mark.parametrize("theme", ["dark", "talk"])
def test_distribution_texts_and_bars_are_the_trace(make_panel, theme):
    trace = gpt2_trace(8)
    view, panel = make_panel(DistributionPanel, trace, theme=theme, cursor=4)
    t = 4
    np.testing.assert_array_equal(panel.probs, trace.array("topk_probs")[t])
    np.testing.assert_array_equal(panel.ids, trace.array("topk_ids")[t])
    np.testing.assert_allclose(panel.bars.opts["width"], panel.probs)
    assert panel.labels == [f"#{int(i)}" for i in panel.ids]  # no vocabulary in this trace
    ranks = panel.plot.getAxis("left")
    assert ranks.texts == [show_token(s, 10) for s in panel.labels]
    width = ranks.width()
    for text in [*ranks.texts, "W" * 10, "\u2423" * 10]:  # wide texts are elided to fit the axis
        assert ranks._cache.entry(text)[0].size().width() + ranks.TICK + 3 <= width
    assert [text for _, _, text, _ in panel.values.items] == [f"{p:.4f}" for p in panel.probs]
    assert [(x, y) for x, y, _, _ in panel.values.items] == [
        (float(p), float(r)) for r, p in enumerate(panel.probs)
    ]
    foreground = view.state.theme_obj.foreground
    assert {colour for *_, colour in panel.values.items} == {foreground}
    assert panel.plot.titleLabel.text == "next token after step 4 'tok4'"
    assert "actual next (read)" in panel.note.text()
    view.update(cursor=2)  # a token that looks like markup is shown as text
    assert panel.plot.titleLabel.item.toPlainText() == "next token after step 2 '<b>'"
    view.update(cursor=4)
    assert panel.plot.titleLabel.item.toPlainText() == "next token after step 4 'tok4'"
    image = panel.grab().toImage().convertToFormat(QImage.Format.Format_ARGB32)
    pixels = np.frombuffer(image.constBits(), np.uint32, count=image.width() * image.height())
    assert len(np.unique(pixels)) > 5
