"""Token labels from the tokens' bytes in the panels, the token strip and the editor (a byte-level token
holding part of a character shows as ‹C3›), and the token strip's placeholder and prediction tint.
Real tiny GPT-2, LSTM and classifier runs; real widgets."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QColor

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels.attention import AttentionPanel
from memviz.panels.lstm_gates import GatesPanel
from memviz.panels.prediction import COLOURS
from memviz.panels.view_model import ViewModel
from memviz.ui.token_strip import (
    NEGATIVE,
    PLACEHOLDER,
    POSITIVE,
    TokenStripView,
    available_signals,
    display_text,
)

CAFE = "Café ☕ and the quick brown fox"


@pytest.fixture(scope="module")
def cafe(run_session, gpt2_dir, tmp_path_factory) -> tuple[Trace, object]:
    """A run on the tiny GPT-2 (its BPE is trained on ASCII: é and ☕ are split into byte tokens)."""
    from memviz.backends.registry import load_backend

    backend = load_backend(str(gpt2_dir))
    session = run_session(backend, text=CAFE)
    path = session.trace.save(tmp_path_factory.mktemp("cafe") / "cafe.memviz")
    return Trace.load(path), path


def partial_steps(trace: Trace) -> list[int]:
    return [i for i, label in enumerate(trace.token_labels) if "‹" in label]


def test_the_tiny_gpt2_splits_a_character(cafe):
    trace, _ = cafe
    assert partial_steps(trace), trace.token_labels  # the test below needs a partial token
    assert trace.text() == CAFE


def test_attention_axes_tooltips_and_readout_show_the_bytes(make_panel, cafe):
    trace, _ = cafe
    i = partial_steps(trace)[0]
    label = trace.token_label(i)
    assert label.startswith("‹") and "\ufffd" not in label
    view, panel = make_panel(AttentionPanel, trace, cursor=len(trace) - 1)
    axis = panel.heatmap.plot.getAxis("bottom")
    assert list(axis.tokens) == trace.token_labels  # not token_text's replacement characters
    assert axis.tickStrings([i + 0.5], 1.0, 1.0)[0].startswith("‹")
    tooltip = panel.heatmap.tooltip_at(len(trace) - 1, i)
    assert f"key {i} '{label}'" in tooltip
    assert f"{i} '{label}'" in panel._readout(len(trace) - 1, i, 0.5)


def test_a_live_run_s_axis_sees_the_steps_appended_after_set_trace(qtbot, run_session, lstm_dir):
    session = run_session(lstm_dir, text="ab")
    trace = session.trace
    panel = GatesPanel(ViewModel())
    qtbot.addWidget(panel)
    panel.set_trace(trace)
    axis = panel.heatmaps[0].plot.getAxis("bottom")
    before = len(axis.tokens)
    session.feed("cd")
    session.run()
    assert len(axis.tokens) == len(trace) == before + 2
    assert list(axis.tokens) == trace.token_labels


def test_token_strip_labels_and_tooltip_show_the_bytes(qtbot, cafe):
    trace, _ = cafe
    view = ViewModel(ViewState(cursor=len(trace) - 1, signal="none"))
    strip_view = TokenStripView(view)
    qtbot.addWidget(strip_view)
    strip = strip_view.strip
    strip.set_trace(trace)
    strip_view.render(view.state)
    for i in range(len(trace)):
        assert strip.token_label(i) == display_text(trace.token_label(i))
    i = partial_steps(trace)[0]
    assert strip.token_label(i).startswith("‹")
    assert repr(trace.token_label(i)) in strip.tooltip_text(i)
    assert "p(next token" in strip.tooltip_text(0)  # a language model has candidates


def test_opening_the_saved_trace_puts_the_exact_text_in_the_editor(make_window, cafe):
    _, path = cafe
    window = make_window()
    window.open_trace(path)
    assert window.editor.toPlainText() == CAFE
    assert any("‹" in window.strip.token_label(i) for i in range(window.strip.token_count()))


def test_placeholder_changes_once_a_model_is_loaded(qtbot, make_window, lstm_dir):
    window = make_window()
    strip = window.strip
    assert strip.placeholder == PLACEHOLDER
    window.load_model(str(lstm_dir))
    qtbot.waitUntil(lambda: window.info is not None and window._loading is None, timeout=60_000)
    assert strip.placeholder == "Press Ctrl+Enter to read the text (or Space to play)"
    assert strip.token_count() == 0  # what is painted is the attribute
    shown = strip.grab().toImage()
    strip.placeholder = ""
    assert strip.grab().toImage() != shown


# -- the prediction tint ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classifiers(run_session, rnn_dir_factory, tmp_path_factory) -> dict[int, Trace]:
    folder = tmp_path_factory.mktemp("classifiers")
    out = {}
    for labels in (("positive",), ("negative", "neutral", "positive")):
        model = rnn_dir_factory(
            folder / str(len(labels)), cell="gru", head="classifier", labels=labels, seed=1
        )
        out[len(labels)] = run_session(model, text="The quick brown fox jumps over the lazy dog.").trace
    return out


def strip_on(qtbot, trace: Trace, signal: str = "prediction") -> TokenStripView:
    view = ViewModel(ViewState(cursor=len(trace) - 1, signal=signal))
    strip_view = TokenStripView(view)
    qtbot.addWidget(strip_view)
    strip_view.strip.set_trace(trace)
    strip_view.resize(700, 200)
    strip_view.render(view.state)
    return strip_view


def test_prediction_is_offered_for_classifiers_only(classifiers, cafe):
    assert "prediction" in available_signals(classifiers[1])
    assert "prediction" not in available_signals(cafe[0])
    assert "cell" not in available_signals(classifiers[1])  # a GRU has no cell state
    assert "unit" in available_signals(classifiers[1])


def test_one_label_tints_around_one_half(qtbot, classifiers):
    trace = classifiers[1]
    p = trace.array("prediction")[:, 0].astype(np.float64)
    strip_view = strip_on(qtbot, trace)
    strip = strip_view.strip
    np.testing.assert_array_equal(strip.values(), p)
    assert (p > 0.5).any() or (p < 0.5).any()
    for i, value in enumerate(p):
        colour = strip.token_color(i)
        base = POSITIVE if value >= 0.5 else NEGATIVE
        assert (colour.red(), colour.green(), colour.blue()) == (base.red(), base.green(), base.blue())
        assert colour.alpha() == round(min(1.0, abs(2 * value - 1)) * 0.85 * 255)
    legend = strip_view.legend
    assert "p(positive)" in legend.label and legend.scale == (0.0, 1.0) and legend.ends() == (-1.0, 1.0)
    assert legend.end_texts() == ("0", "1")
    tooltip = strip.tooltip_text(2)
    assert "p(next token" not in tooltip  # a classifier has no candidates
    assert f"Prediction: p(positive): {p[2]:.4f}" in tooltip


def test_several_labels_tint_in_the_likeliest_labels_colour(qtbot, classifiers):
    trace = classifiers[3]
    prediction = trace.array("prediction").astype(np.float64)
    best = prediction.argmax(axis=1)
    strip_view = strip_on(qtbot, trace)
    strip = strip_view.strip
    np.testing.assert_array_equal(strip.values(), prediction.max(axis=1))
    for i in range(len(trace)):
        colour = strip.token_color(i)
        expected = QColor(COLOURS[best[i]])
        assert (colour.red(), colour.green(), colour.blue()) == (
            expected.red(),
            expected.green(),
            expected.blue(),
        )
        sure = (prediction[i, best[i]] - 1 / 3) / (1 - 1 / 3)
        assert colour.alpha() == round(min(1.0, sure) * 0.85 * 255)
    legend = strip_view.legend
    assert [name for name, _ in legend.swatches] == ["negative", "neutral", "positive"]
    assert [c.rgb() for _, c in legend.swatches] == [QColor(c).rgb() for c in COLOURS[:3]]
    assert "likeliest label" in legend.label
    names = ["negative", "neutral", "positive"]
    assert f"Prediction: {names[best[4]]}: {prediction[4, best[4]]:.4f}" in strip.tooltip_text(4)
