"""Saved sessions (trace + view state, no model needed) and the app's export actions."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from memviz.cli import main
from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.export.session_file import load_session, save_session, saved_view
from memviz.panels.view_model import ViewModel


@pytest.fixture(autouse=True)
def _no_unsaved_run_question(monkeypatch):
    """pytest-qt closes the windows before the fixtures shut them down: nobody answers a question."""
    from memviz.ui.main_window import MainWindow

    monkeypatch.setattr(MainWindow, "ask_before_discarding", False)


@pytest.fixture(scope="module")
def lstm_trace(tmp_path_factory, lstm_dir):
    path = tmp_path_factory.mktemp("session") / "run.memviz"
    assert (
        main(
            [
                "trace",
                "--model",
                str(lstm_dir),
                "--text",
                "hello there",
                "--generate",
                "3",
                "--out",
                str(path),
            ]
        )
        == 0
    )
    return path


def test_session_round_trip_without_the_model(tmp_path, lstm_dir):
    model = tmp_path / "model"
    shutil.copytree(lstm_dir, model)
    plain = tmp_path / "plain.memviz"
    assert main(["trace", "--model", str(model), "--text", "abcabc", "--out", str(plain)]) == 0
    shutil.rmtree(model)
    trace = Trace.load(plain)
    state = ViewState(cursor=3, layer=2, unit=7, theme="talk", signal="unit", follow=False)
    session = save_session(tmp_path / "talk.memviz", trace, state, extra={"panel": "gates"})
    loaded = load_session(session)
    assert loaded.has_view and loaded.state == state and loaded.extra == {"panel": "gates"}
    assert loaded.trace.token_text == trace.token_text
    for key in ("gates", "cell", "hidden", "topk_probs", "topk_ids"):
        np.testing.assert_array_equal(loaded.trace.array(key), trace.array(key))
    # still a plain trace to anyone else: format 1, opens without pickle
    with np.load(session, allow_pickle=False) as archive:
        assert {"manifest", "token_ids", "gates"} <= set(archive.files)
    assert len(Trace.load(session)) == len(trace)


def test_plain_trace_opens_as_a_session(lstm_trace):
    loaded = load_session(lstm_trace)
    assert not loaded.has_view
    assert loaded.state.cursor == len(loaded.trace) - 1


def test_bad_saved_view_falls_back(tmp_path, lstm_trace):
    trace = Trace.load(lstm_trace)
    path = save_session(tmp_path / "s.memviz", trace, ViewState(cursor=999, theme="talk"))
    state, _ = saved_view(Trace.load(path))
    assert state.cursor == len(trace) - 1 and state.theme == "talk"
    trace.extra_manifest["view_state"] = {"view": {"theme": "neon", "layer": "x", "future_field": 1}}
    state, _ = saved_view(trace)
    assert state.theme == "dark" and state.layer == 0


def test_export_uses_the_saved_view(tmp_path, lstm_trace, capsys):
    trace = Trace.load(lstm_trace)
    session = save_session(tmp_path / "s.memviz", trace, ViewState(cursor=2, layer=1, unit=4, theme="dark"))
    out = tmp_path / "u.csv"
    assert (
        main(["export", "--trace", str(session), "--format", "csv", "--series", "unit", "--out", str(out)])
        == 0
    )
    rows = out.read_text().splitlines()
    assert float(rows[1].split(",")[-2]) == float(trace.array("cell")[0, 1, 4])


def test_bad_session_path_is_one_line(capsys, tmp_path):
    (tmp_path / "junk.memviz").write_text("not a zip")
    assert (
        main(["export", "--trace", str(tmp_path / "junk.memviz"), "--all", "--out", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("memviz: error: ") and err.count("\n") == 1


# -- the app side --------------------------------------------------------------------------------
class StubWindow:
    """What install_export_actions needs from the main window, on a real QMainWindow."""

    def __new__(cls, trace, panel_cls):
        from PySide6.QtWidgets import QMainWindow

        window = QMainWindow()
        window.view = ViewModel(ViewState(cursor=len(trace) - 1))
        window.trace = None
        window.messages = []
        window.message = window.messages.append
        window.file_menu = window.menuBar().addMenu("File")
        window.add_file_action = lambda action=None: (
            window.file_menu.addSeparator() if action is None else window.file_menu.addAction(action)
        )
        panel = panel_cls(window.view)
        window.setCentralWidget(panel)
        window.panels = {panel.name: panel}

        def open_trace(source):
            window.trace = source if isinstance(source, Trace) else Trace.load(source)
            panel.set_trace(window.trace)

        window.open_trace = open_trace
        window.open_trace(trace)
        return window


def _panel_cls(tiny_panel_class):
    from memviz.panels.registry import PANEL_CLASSES

    lstm = [c for c in PANEL_CLASSES if c.supports(Trace(model={"architecture": "lstm"}))]
    if lstm:
        return lstm[0]
    return tiny_panel_class  # no panels registered yet: the engine's own test panel


@pytest.fixture
def stub(qtbot, lstm_trace, tiny_panel_class):
    from memviz.ui.export_actions import install_export_actions

    window = StubWindow(Trace.load(lstm_trace), _panel_cls(tiny_panel_class))
    qtbot.addWidget(window)
    actions = install_export_actions(window)
    yield window, actions
    if actions.job is not None:
        actions.cancel_animation()


def test_app_session_save_and_open_restores_view(stub, tmp_path):
    window, actions = stub
    window.view.update(cursor=2, layer=1, unit=5, theme="talk")
    path = actions.save_session(tmp_path / "s.memviz")
    window.view.update(cursor=0, layer=0, unit=0, theme="dark")
    actions.open_session(path)
    state = window.view.state
    assert (state.cursor, state.layer, state.unit, state.theme) == (2, 1, 5, "talk")
    texts = [a.text() for a in window.file_menu.actions()]
    assert {"Save session...", "Open session...", "Export all panels...", "Export animation..."} <= set(texts)


def test_app_figure_clipboard_all_and_csv(stub, tmp_path):
    from PySide6.QtWidgets import QApplication

    window, actions = stub
    panel = next(iter(window.panels.values()))
    out = actions.export_figure(panel, tmp_path / "f.svg")
    assert "<text" in out.read_text()
    actions.copy_figure(panel)
    assert not QApplication.clipboard().image().isNull()
    files = actions.export_all(tmp_path / "all", "png")
    assert [f.stem for f in files] == list(window.panels)
    csv = actions.export_csv(tmp_path / "u.csv")
    from memviz.export.data import read_csv_values

    assert len(read_csv_values(csv)[1]) == len(window.trace)  # tokens may hold newlines: quoted
    menu = actions.panel_menu(panel)
    assert [a.text() for a in menu.actions()][:2] == ["Export...", "Copy figure"]


def test_app_animation_progress_and_cancel(stub, qtbot, tmp_path):
    from PIL import Image

    window, actions = stub
    panel = next(iter(window.panels.values()))
    job = actions.start_animation(panel, tmp_path / "a.gif", 0, 4)
    qtbot.waitUntil(lambda: actions.job is None, timeout=60_000)  # the event loop keeps running meanwhile
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 5 == job.total
    actions.start_animation(panel, tmp_path / "b.gif", 0, len(window.trace) - 1)
    qtbot.waitUntil(lambda: actions.job is None or actions.job.done >= 1, timeout=30_000)
    actions.cancel_animation()
    assert actions.job is None and not (tmp_path / "b.gif").exists()
