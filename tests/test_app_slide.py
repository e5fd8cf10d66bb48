"""Run -> Read past the context window: the app reads on in windows that slide, as --slide does."""

from __future__ import annotations

import numpy as np

TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n" * 3


def _load(qtbot, window, folder):
    window.editor.setPlainText(TEXT)
    window.load_model(str(folder))
    qtbot.waitUntil(lambda: window.info is not None and window._loading is None, timeout=60_000)
    window.transport.set_speed(0)


def test_reading_past_the_window_in_the_app_equals_slide(qtbot, make_window, gpt2_dir_factory, tmp_path):
    from memviz.backends.registry import load_backend
    from memviz.core.session import Session

    folder = gpt2_dir_factory(tmp_path / "gpt2-16", positions=16)
    window = make_window()
    _load(qtbot, window, folder)
    action = window.slide_action.action
    assert action.isEnabled() and not action.isChecked()
    assert "16 tokens" in action.text()
    before = window.runs_finished
    window.set_playing(True)
    qtbot.waitUntil(lambda: window.runs_finished > before, timeout=60_000)
    assert len(window.trace) == 16  # the window is full: the run stops
    assert any("context window" in m for m in window.messages)

    with qtbot.waitSignal(window.playback.reread_finished, timeout=120_000):
        action.setChecked(True)  # read the text again, past the window
    trace = window.trace
    assert window.messages[-1].startswith("reading past the context window: re-read from step 0")
    qtbot.waitUntil(lambda: window.context_label.text() == f"context {len(trace)}, windows of 16")
    want = Session(load_backend(str(folder)), slide=True)
    want.feed(TEXT)
    want.run()
    assert len(trace) == len(want.trace) > 16
    assert trace.token_ids == want.trace.token_ids
    # windows begin at the window (16), then every stride (8) steps
    assert trace.window_boundaries == want.trace.window_boundaries == tuple(range(16, len(trace), 8))
    np.testing.assert_allclose(trace.array("topk_probs"), want.trace.array("topk_probs"), atol=1e-6)
    last = len(trace) - 1
    np.testing.assert_allclose(trace.attention_rows_at(last), want.trace.attention_rows_at(last), atol=1e-6)
    assert trace.attention_row(last, 0, 0)[: trace.window_start(last)].sum() == 0  # outside its window

    with qtbot.waitSignal(window.playback.reread_finished, timeout=120_000):
        action.setChecked(False)  # and back: the run stops at the window again
    assert len(window.trace) == 16 and window.trace.window_boundaries == ()


def test_a_recurrent_model_has_no_window_to_slide(qtbot, make_window, lstm_dir):
    window = make_window()
    _load(qtbot, window, lstm_dir)
    assert not window.slide_action.action.isEnabled()
