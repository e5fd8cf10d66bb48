"""The distribution panel shows what sampling did (issue 13 item 8), and fits: the best bar's value is
never cut, the probability axis labels its 0, and a narrow dock's title stays centred."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QFontMetricsF, QImage, QPainter

from memviz.core.sampling import SamplingConfig
from memviz.core.trace import Trace
from memviz.panels.distribution import DistributionPanel


@pytest.fixture(scope="module")
def sampled(run_session, lstm_dir) -> Trace:
    config = SamplingConfig(temperature=0.7, top_k=5, top_p=0.95, seed=1)
    return run_session(lstm_dir, "The quick brown fox", generate=5, sampling=config).trace


def test_a_generated_step_shows_the_distribution_it_was_drawn_from(sampled, make_panel):
    t = len(sampled) - 3  # the next token (t + 1) was generated
    assert sampled.generated[t + 1] and not sampled.generated[2]
    view, panel = make_panel(DistributionPanel, sampled, cursor=t)
    ids = sampled.array("sample_topk_ids")[t + 1]
    probs = sampled.array("sample_topk_probs")[t + 1]
    after = {int(i): float(p) for i, p in zip(ids, probs, strict=True) if i >= 0}
    assert 0 < len(after) <= 5
    expected = [(rank, after[int(i)]) for rank, i in enumerate(panel.ids) if int(i) in after]
    assert expected, "the kept candidates are among those shown"
    np.testing.assert_array_equal(panel.sample_bars.opts["y"], [rank for rank, _ in expected])
    np.testing.assert_allclose(panel.sample_bars.opts["width"], [p for _, p in expected], rtol=1e-6)
    assert "after sampling" in panel.note.text()
    view.update(cursor=1)  # token 2 was read: no sampling to show
    assert len(panel.sample_bars.opts["width"]) == 0 and "after sampling" not in panel.note.text()


def sharp(trace: Trace, t: int, best: float) -> Trace:
    arrays = {k: v.copy() for k, v in trace.to_arrays().items()}
    arrays["topk_probs"][t] = (1 - best) / (arrays["topk_probs"].shape[1] - 1)
    arrays["topk_probs"][t, 0] = best
    return Trace.from_arrays(arrays)


@pytest.mark.parametrize("theme", ["dark", "talk"])
def test_the_best_value_stays_inside_the_axis(sampled, make_panel, theme):
    view, panel = make_panel(DistributionPanel, sharp(sampled, 3, 0.9712), cursor=3, theme=theme)
    vb = panel.plot.getViewBox()
    per_pixel = panel.x_max / vb.width()
    metrics = QFontMetricsF(panel.values.font)
    assert panel.x_max == 1.0
    for x, _y, text, _colour in panel.values.items:
        assert x + (4 + metrics.horizontalAdvance(text)) * per_pixel <= panel.x_max + 1e-9, text
    x, _y, text, colour = panel.values.items[0]
    assert text == "0.9712" and x < 0.9712  # drawn inside its bar, in dark text
    assert colour == "#111111"


@pytest.mark.parametrize("theme", ["dark", "talk"])
def test_the_probability_axis_labels_its_origin(sampled, make_panel, theme, settle):
    view, panel = make_panel(DistributionPanel, sampled, cursor=3, theme=theme)
    image = QImage(10, 10, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        _axis, _ticks, texts = panel.x_axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    assert "0" in [text for _rect, _flags, text in texts]


def test_a_narrow_docks_title_is_centred(sampled, make_panel, settle):
    view, panel = make_panel(DistributionPanel, sampled, cursor=3)
    for width in (260, 320, 900):
        panel.resize(width, 400)
        settle(panel)
        view.update(cursor=view.state.cursor + 1)
        settle(panel)
        label = panel.plot.titleLabel
        shown = label.mapRectToParent(label.item.mapRectToParent(label.item.boundingRect()))
        frame = label.mapRectToParent(label.rect())
        assert abs(shown.center().x() - frame.center().x()) <= 2, (width, shown, frame)
