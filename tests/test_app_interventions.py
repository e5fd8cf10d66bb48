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


# -- re-reading from the first changed step, right-click to intervene (issue 17, item 1) --------------
def wait_done(qtbot, window, count: int) -> str:
    """Wait for the count-th re-read to end; what the status bar says then."""
    actions = window.intervene_actions
    qtbot.waitUntil(lambda: actions.done_count >= count and not window.playback.running, timeout=60_000)
    qtbot.waitUntil(lambda: not window._redraw_timer.isActive(), timeout=5_000)
    return actions.last_done


def session_run(folder, specs: list[str], text: str = TEXT):
    from memviz.backends.registry import load_backend
    from memviz.core.interventions import parse_all
    from memviz.core.session import Session

    session = Session(load_backend(str(folder)), interventions=parse_all(specs))
    session.feed(text)
    session.run()
    return session.trace


def assert_equal_runs(trace, expected, atol: float = 1e-5) -> None:
    assert trace.token_ids == expected.token_ids
    assert [i["spec"] for i in trace.manifest()["interventions"]] == [
        i["spec"] for i in expected.manifest()["interventions"]
    ]
    for key in expected.column_names:
        np.testing.assert_allclose(trace.array(key), expected.array(key), rtol=1e-5, atol=atol, err_msg=key)


def global_of(canvas, scene_pos):
    return canvas.viewport().mapToGlobal(canvas.mapFromScene(scene_pos))


def test_right_click_a_head_ablates_it_and_rereads(qtbot, make_window, gpt2_dir):
    from PySide6.QtGui import QContextMenuEvent
    from PySide6.QtWidgets import QApplication, QMenu

    window = make_window()
    load_and_read(qtbot, window, gpt2_dir)
    baseline = window.trace
    panel = window.panels["heads"]
    window.docks["heads"].show()
    window.docks["heads"].raise_()
    qtbot.waitUntil(lambda: panel.isVisible() and panel.step == len(baseline) - 1, timeout=10_000)
    # a real right-click on head (1, 0): the panel's menu offers to ablate it, above Export...
    shown: list[QMenu] = []
    build = window.export_actions.panel_menu

    class Shown:  # the menu the right-click builds, kept instead of shown (exec would wait for a click)
        def __init__(self, menu: QMenu) -> None:
            self.menu = menu

        def exec(self, *_args) -> None:
            shown.append(self.menu)

    window.export_actions.panel_menu = lambda panel, pos=None: Shown(build(panel, pos))
    viewport = panel.canvas.viewport()
    local = panel.canvas.mapFromScene(panel.scene_pos_of(1, 0))
    try:
        QApplication.sendEvent(
            viewport, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, local, viewport.mapToGlobal(local))
        )
    finally:
        del window.export_actions.panel_menu
    assert len(shown) == 1
    labels = [a.text() for a in shown[0].actions()]
    assert labels[0] == "ablate head 1.0" and "Export..." in labels, labels
    other = window.export_actions.panel_menu(panel, global_of(panel.canvas, panel.scene_pos_of(2, 3)))
    assert other.actions()[0].text() == "ablate head 2.3"

    shown[0].actions()[0].trigger()
    done = wait_done(qtbot, window, 1)
    trace = window.trace
    assert trace is not baseline and trace.baseline is baseline
    assert [i["spec"] for i in trace.manifest()["interventions"]] == ["head:1.0=zero"]
    assert_equal_runs(trace, session_run(gpt2_dir, ["head:1.0=zero"]))
    # the status bar says what was done, not "reading the text again"
    assert done.startswith("head:1.0=zero: re-read from step 0 in ") and done.endswith(" s"), done
    assert window.statusBar().currentMessage() == done

    # right-click the same head again: it is on, the menu offers to remove it (back to a plain run)
    panel = window.panels["heads"]  # the docks may hold a new panel for the compared run
    qtbot.waitUntil(lambda: panel.step == len(trace) - 1, timeout=10_000)
    menu = window.export_actions.panel_menu(panel, global_of(panel.canvas, panel.scene_pos_of(1, 0)))
    assert menu.actions()[0].text() == "remove head:1.0=zero"
    menu.actions()[0].trigger()
    wait_done(qtbot, window, 2)
    assert window.trace.manifest()["interventions"] == [] and window.trace.baseline is None
    np.testing.assert_allclose(
        window.trace.array("target_logprob"), baseline.array("target_logprob"), rtol=1e-5, atol=1e-6
    )


class _NotShown:
    """A menu built by a right-click, kept instead of shown (exec would wait for a click)."""

    def __init__(self, menu) -> None:
        self.menu = menu

    def exec(self, *_args) -> None:
        pass


def test_a_mask_rereads_from_its_first_step(qtbot, make_window, gpt2_dir):
    """mask:5-8 changes nothing before step 5: steps 0-4 are the baseline's rows, not recomputed."""
    window = make_window()
    load_and_read(qtbot, window, gpt2_dir)
    baseline = window.trace
    strip = window.strip
    qtbot.waitUntil(lambda: strip.token_count() == len(baseline), timeout=10_000)
    pos = strip.mapToGlobal(strip.token_rect(5).center())
    labels = dict(strip.intervention_targets_at(pos))
    menu = window.intervene_actions.strip_menu(strip, pos)
    texts = [a.text() for a in menu.actions()]
    assert texts[0].startswith("mask '") and texts[0].endswith("(mask:5-5)"), texts
    assert f"mask:5-{len(baseline) - 1}" in labels.values() and "mask:1-4" in labels.values()
    # a real right-click on the strip asks for that menu at that place
    from PySide6.QtGui import QContextMenuEvent
    from PySide6.QtWidgets import QApplication

    asked = []
    build = window.intervene_actions.strip_menu
    window.intervene_actions.strip_menu = lambda source, at: (
        asked.append((source, at)) or _NotShown(build(source, at))
    )
    try:
        local = strip.token_rect(5).center()
        QApplication.sendEvent(
            strip, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, local, strip.mapToGlobal(local))
        )
    finally:
        del window.intervene_actions.strip_menu
    assert asked == [(strip, pos)]

    assert window.intervene_actions.intervene("mask:5-8")
    done = wait_done(qtbot, window, 1)
    assert done.startswith("mask:5-8: re-read from step 5 in "), done
    trace = window.trace
    assert_equal_runs(trace, session_run(gpt2_dir, ["mask:5-8"]))
    for key in baseline.column_names:
        np.testing.assert_array_equal(trace.array(key)[:5], baseline.array(key)[:5], err_msg=key)
    logp_a, logp_b = baseline.array("target_logprob"), trace.array("target_logprob")
    assert np.nanmax(np.abs(logp_b[5:] - logp_a[5:])) > 1e-4


def test_right_click_a_unit_and_a_token_of_an_lstm(qtbot, make_window, lstm_dir, monkeypatch):
    window = make_window()
    load_and_read(qtbot, window, lstm_dir)
    baseline = window.trace
    panel = window.panels["state"]
    window.docks["state"].show()
    window.docks["state"].raise_()
    window.view.update(layer=1, unit=0)
    qtbot.waitUntil(lambda: panel.isVisible() and panel.layer == 1 and panel.step >= 0, timeout=10_000)
    heatmap = panel.heatmaps["cell"]
    pos = global_of(panel.canvas, heatmap.scene_pos_of(panel.units.row_of_unit(7), 12))
    menu = window.export_actions.panel_menu(panel, pos)
    texts = [a.text() for a in menu.actions()]
    assert texts[:3] == [
        "clamp cell 1.7 to a value...",
        "clamp hidden 1.7 to a value...",
        "reset the state before step 12",
    ], texts
    asked: list[str] = []
    monkeypatch.setattr(window.intervene_actions, "ask_value", lambda target: asked.append(target) or 0.5)
    menu.actions()[0].trigger()
    done = wait_done(qtbot, window, 1)
    assert asked == ["cell:1.7"] and done.startswith("cell:1.7=0.5: re-read from step 0 in "), done
    assert_equal_runs(window.trace, session_run(lstm_dir, ["cell:1.7=0.5"]))
    np.testing.assert_array_equal(window.trace.array("cell")[:, 1, 7], 0.5)

    # a token of the strip: reset the state before it, on top of the clamp; steps 0-9 taken over
    strip = window.strip
    qtbot.waitUntil(lambda: strip.token_count() == len(baseline), timeout=10_000)
    token = strip.mapToGlobal(strip.token_rect(10).center())
    menu = window.intervene_actions.strip_menu(strip, token)
    first = menu.actions()[0]
    assert first.data() == "reset:10" and first.text().startswith("reset the state before '")
    before = window.trace
    first.trigger()
    done = wait_done(qtbot, window, 2)
    assert done.startswith("cell:1.7=0.5, reset:10: re-read from step 10 in "), done
    trace = window.trace
    assert trace.baseline is baseline  # the plain run stays the baseline
    assert_equal_runs(trace, session_run(lstm_dir, ["cell:1.7=0.5", "reset:10"]), atol=0)
    for key in before.column_names:
        np.testing.assert_array_equal(trace.array(key)[:10], before.array(key)[:10], err_msg=key)


def test_targets_by_kind_of_model(run_session, rnn_dir_factory, gpt2_dir, tmp_path):
    """What a right-click offers: a GRU's unit its hidden state only; a transformer's token masks,
    a recurrent model's token a reset; position 0 and a window past the cursor nothing."""
    from memviz.panels.intervention_targets import head_targets, token_targets, unit_targets

    gru = run_session(rnn_dir_factory(tmp_path / "gru", cell="gru")).trace
    assert unit_targets(gru, 1, 3, 0) == [("clamp hidden 1.3 to a value...", "hidden:1.3=?")]
    assert [spec for _, spec in token_targets(gru, 4, 9)] == ["reset:4", "context:6"]
    assert token_targets(gru, 0, 9) == [] and [s for _, s in token_targets(gru, 9, 4)] == ["reset:9"]
    gpt2 = run_session(gpt2_dir).trace
    last = len(gpt2) - 1
    assert [s for _, s in token_targets(gpt2, 3, last)] == [
        "mask:3-3",
        f"mask:3-{last}",
        "mask:1-2",
        f"context:{last - 2}",
    ]
    assert head_targets(2, 1) == [("ablate head 2.1", "head:2.1=zero")]
