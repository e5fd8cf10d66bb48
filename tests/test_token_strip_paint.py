"""The token strip's painting: a line seen twice in a row is kept as a pixmap of its texts and blitted
after that; the picture must not depend on which of the three ways (drawn directly, kept, blitted) a
line took, and a kept line must follow a new token, a resize and a theme."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from memviz.core.trace import StepRecord, Trace
from memviz.core.view import ViewState
from memviz.panels.view_model import ViewModel
from memviz.ui.token_strip import TokenStripView

WORDS = [" the", " cat", " sat", " on", " a", " mat", ".", "\n", " It", " was", " warm", ",", " and"]


def lstm_trace(n: int, seed: int = 0) -> Trace:
    trace = Trace(
        {
            "name": "tiny-lstm",
            "source": "synthetic",
            "architecture": "lstm",
            "kind": "recurrent",
            "num_layers": 1,
            "hidden_size": 4,
            "num_heads": 0,
            "vocab_size": len(WORDS),
            "context_size": None,
        }
    )
    for record in records(0, n, seed):
        trace.append(record)
    return trace


def records(start: int, stop: int, seed: int = 0):
    rng = np.random.default_rng(seed + start)
    for t in range(start, stop):
        word = int(rng.integers(len(WORDS)))
        cell = rng.standard_normal((1, 4)).astype(np.float32)
        internals = {
            "gates": rng.random((1, 4, 4), dtype=np.float32),
            "cell": cell,
            "hidden": np.tanh(cell),
        }
        ids = np.arange(3)
        probs = np.array([0.5, 0.3, 0.2], np.float32)
        yield StepRecord(word, WORDS[word], t >= stop - 40, ids, probs, internals)


def strip_image(view: TokenStripView) -> np.ndarray:
    strip = view.strip
    image = strip.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    data = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    return data.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 4].copy()


def make_strip(qtbot, trace: Trace, theme: str = "dark") -> tuple[TokenStripView, ViewModel]:
    view = ViewModel(ViewState(cursor=len(trace) - 1, signal="unit", theme=theme))
    strip_view = TokenStripView(view)
    qtbot.addWidget(strip_view)
    strip_view.strip.set_trace(trace)
    strip_view.resize(600, 400)
    strip_view.show()
    strip_view.render(view.state)
    return strip_view, view


def test_a_kept_line_paints_what_a_direct_draw_paints(qtbot):
    trace = lstm_trace(300)
    strip_view, _view = make_strip(qtbot, trace)
    strip = strip_view.strip
    strip._line_pixmaps.clear()
    strip._painted_lines = set()
    direct = strip_image(strip_view)  # every line drawn directly
    assert not strip._line_pixmaps
    kept = strip_image(strip_view)  # seen twice: kept as pixmaps
    assert strip._line_pixmaps
    blitted = strip_image(strip_view)
    # the texts are drawn on a transparent pixmap and blended over the tints: the same pixels, up
    # to the rounding of an antialiased edge
    assert np.abs(kept.astype(int) - direct).max() <= 2
    assert np.array_equal(blitted, kept)
    # there is something to compare: tints, texts and the dashed underlines of generated tokens
    assert len(np.unique(direct.reshape(-1, 4), axis=0)) > 20


def test_kept_lines_follow_new_tokens_width_and_theme(qtbot):
    trace = lstm_trace(200)
    strip_view, view = make_strip(qtbot, trace)
    strip = strip_view.strip
    for _ in range(2):
        strip_image(strip_view)  # the lines on screen are kept now
    for record in records(200, 260, seed=3):
        trace.append(record)
        view.update(cursor=len(trace) - 1)
        strip_view.render(view.state)
        strip_image(strip_view)
    shown = strip_image(strip_view)
    fresh_view, _ = make_strip(qtbot, trace)  # the same run, drawn by a strip that kept nothing
    fresh_view.resize(strip_view.size())
    fresh_view.render(view.state)
    fresh_view.verticalScrollBar().setValue(strip_view.verticalScrollBar().value())
    assert np.abs(strip_image(fresh_view).astype(int) - shown).max() <= 2

    strip_view.resize(450, 400)  # lines break elsewhere: other keys
    strip_view.render(view.state)
    narrow = strip_image(strip_view)
    strip._line_pixmaps.clear()
    strip._painted_lines = set()
    assert np.abs(strip_image(strip_view).astype(int) - narrow).max() <= 2

    view.update(theme="talk")
    strip_view.render(view.state)
    for _ in range(3):
        talk = strip_image(strip_view)
    strip._line_pixmaps.clear()
    strip._painted_lines = set()
    assert np.abs(strip_image(strip_view).astype(int) - talk).max() <= 2
    assert not np.array_equal(talk, narrow)


def legend_image(view: TokenStripView) -> np.ndarray:
    image = view.legend.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    data = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    return data.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 4].copy()


def test_the_legends_colour_scale_is_drawn_once_and_follows_the_theme(qtbot):
    """The legend's colour scale is kept as a pixmap: what it shows after a theme change (and a
    signal change) is what a legend drawn for the first time in that look shows."""
    trace = lstm_trace(120)
    strip_view, view = make_strip(qtbot, trace)
    dark = legend_image(strip_view)
    assert strip_view.legend._bar[0] is not None
    view.update(theme="talk")
    strip_view.render(view.state)
    talk = legend_image(strip_view)
    fresh, _ = make_strip(qtbot, trace, theme="talk")
    fresh.resize(strip_view.size())
    fresh.render(view.state)
    assert np.array_equal(legend_image(fresh), talk)
    assert not np.array_equal(dark, talk)
    view.update(signal="cell")  # another signal: its own scale
    strip_view.render(view.state)
    cell = legend_image(strip_view)
    other, other_view = make_strip(qtbot, trace, theme="talk")
    other_view.update(signal="cell")
    other.resize(strip_view.size())
    other.render(other_view.state)
    assert np.array_equal(legend_image(other), cell)
