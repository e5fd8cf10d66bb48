"""Run -> Intervene...: the window keeps the run as the baseline, reads the same text again with the
interventions on, and the compare panel shows log p of the next token in both and B - A."""

from __future__ import annotations

import numpy as np

from memviz.export.compare import compare_traces

TEXT = "The quick brown fox jumps over the lazy dog."


def load_and_read(qtbot, window, folder) -> None:
    window.editor.setPlainText(TEXT)
    window.load_model(str(folder))
    qtbot.waitUntil(lambda: window.info is not None and window._loading is None, timeout=60_000)
    window.transport.set_speed(0)
    before = window.runs_finished
    window.set_playing(True)
    qtbot.waitUntil(lambda: window.runs_finished > before, timeout=60_000)


def wait_reread(qtbot, window, baseline) -> None:
    qtbot.waitUntil(
        lambda: (
            window.trace is not baseline
            and len(window.trace) == len(baseline)
            and not window.playback.running
        ),
        timeout=60_000,
    )
    qtbot.waitUntil(lambda: not window._redraw_timer.isActive(), timeout=5_000)


def cli_run(gpt2_dir, specs: list[str]):
    """What `memviz trace --intervene` computes: a fresh session with the interventions on."""
    from memviz.backends.registry import load_backend
    from memviz.core.interventions import parse_all
    from memviz.core.session import Session

    session = Session(load_backend(str(gpt2_dir)), interventions=parse_all(specs))
    session.feed(TEXT)
    session.run()
    return session.trace


def test_intervene_rereads_with_the_head_ablated_and_compares(qtbot, make_window, gpt2_dir):
    window = make_window()
    load_and_read(qtbot, window, gpt2_dir)
    baseline = window.trace
    assert len(baseline) > 5 and "compare" not in window.panels  # no baseline yet: not offered

    assert window.intervene_actions.intervene("head:1.0=zero")
    wait_reread(qtbot, window, baseline)
    trace = window.trace
    assert [i["spec"] for i in trace.manifest()["interventions"]] == ["head:1.0=zero"]
    assert baseline.manifest()["interventions"] == []
    assert trace.token_ids == baseline.token_ids
    assert trace.baseline is baseline

    expected = cli_run(gpt2_dir, ["head:1.0=zero"])
    assert expected.token_ids == trace.token_ids
    np.testing.assert_allclose(trace.array("target_logprob"), expected.array("target_logprob"), rtol=1e-5)
    # the ablation changes something: B differs from A
    logp_a, logp_b = baseline.array("target_logprob"), trace.array("target_logprob")
    assert np.nanmax(np.abs(logp_b - logp_a)) > 1e-4

    panel = window.panels["compare"]
    window.view.update(cursor=len(trace) - 3, follow=False)
    qtbot.waitUntil(lambda: panel.step == len(trace) - 3, timeout=5_000)
    np.testing.assert_array_equal(panel.logp_a, logp_a)
    np.testing.assert_array_equal(panel.logp_b, logp_b)
    np.testing.assert_array_equal(panel.diff, logp_b - logp_a)
    known = ~np.isnan(logp_b - logp_a)
    np.testing.assert_array_equal(panel.bars.opts["height"][known], (logp_b - logp_a)[known])
    c = compare_traces(baseline, trace)  # what `memviz compare` computes (its last step is NaN)
    np.testing.assert_allclose(panel.diff[: c.steps - 1], c.diff[: c.steps - 1], rtol=0, atol=0)
    assert panel.cursor_lines[0].value() == len(trace) - 3

    # Clear interventions: a plain run again, no baseline, no compare panel
    window.intervene_actions.clear()
    wait_reread(qtbot, window, trace)
    assert window.trace.manifest()["interventions"] == []
    assert window.trace.baseline is None and "compare" not in window.panels
    np.testing.assert_allclose(window.trace.array("target_logprob"), logp_a, rtol=1e-5)


def test_a_bad_spec_is_a_message_and_nothing_runs(qtbot, make_window, gpt2_dir):
    window = make_window()
    load_and_read(qtbot, window, gpt2_dir)
    trace = window.trace
    for spec, words in (
        ("head:9.0=zero", "layer 9 out of range"),
        ("cell:0.1=2", "for recurrent"),
        ("x", "unknown"),
    ):
        assert not window.intervene_actions.intervene(spec)
        assert words in window.messages[-1], window.messages[-1]
    qtbot.wait(200)
    assert window.trace is trace and window.intervene_actions.baseline is None
    assert not window.intervene_actions.clear_action.isEnabled()
