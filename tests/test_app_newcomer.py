"""What a newcomer hits in the first hour (issue 13), in the real window with real tiny models: the
live memory panel, `gui --memory`, panels that show the current run after a reset or a model switch,
the keys between typing and playing, the memory's messages, 0-based steps, the unsaved-run question,
the animation's panel, the export scale's bounds, binary files, and the window's minimum sizes."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QComboBox, QDialog, QMessageBox  # noqa: E402

from memviz.ui.main_window import MainWindow  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog. "


@pytest.fixture(autouse=True)
def _quiet(monkeypatch, tmp_path):
    """No question when pytest-qt closes the windows; the default memory stores in this test's folder."""
    monkeypatch.setattr(MainWindow, "ask_before_discarding", False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def load(qtbot, window, folder, text=TEXT):
    window.editor.setPlainText(text)
    window.load_model(str(folder))
    qtbot.waitUntil(lambda: window.info is not None and window._loading is None, timeout=60_000)
    window.transport.set_speed(0)


def play_to_end(qtbot, window):
    before = window.runs_finished
    window.set_playing(True)
    qtbot.waitUntil(lambda: window.runs_finished > before, timeout=60_000)
    window.redraw()


def make_store(qtbot, window, path, doc):
    controls = window.memory_controls
    controls.open_store(str(path), create=True)
    qtbot.waitUntil(lambda: controls.store is not None, timeout=30_000)
    controls.add_documents([str(doc)])
    qtbot.waitUntil(lambda: not controls.busy and len(controls.store) > 0, timeout=60_000)
    return controls.store


# -- 1. the memory panel in a live run ----------------------------------------------------------
def test_memory_panel_appears_in_a_live_run_and_goes_with_the_store(qtbot, make_window, lstm_dir, tmp_path):
    window = make_window()
    load(qtbot, window, lstm_dir)
    assert "memory" not in window.docks
    doc = tmp_path / "notes.txt"
    doc.write_text("lazy dog, quick fox. " * 20)
    store = make_store(qtbot, window, tmp_path / "m.sqlite", doc)
    # the status bar says it for people, not AddResult(...)
    assert f"added notes.txt: {len(store)} memories ({len(store)} in the store)" in window.messages
    assert not any("AddResult" in m for m in window.messages)
    play_to_end(qtbot, window)
    assert window.trace.has("memory_ids")
    assert "memory" in window.docks, "the memory panel must follow the run"
    dock = window.docks["memory"]
    assert dock.isVisible()
    assert dock.toggleViewAction() in window.panels_menu.actions()
    panel = window.panels["memory"]
    assert panel.trace is window.trace
    # memory off: the next run has no memory columns, and the panel goes
    window.memory_controls.off_button.click()
    qtbot.waitUntil(lambda: window.trace is not None and not window.trace.has("memory_ids"), timeout=10_000)
    play_to_end(qtbot, window)
    assert "memory" not in window.docks


def test_gui_memory_opens_the_store_with_its_model(qtbot, settings, lstm_dir, gpt2_dir, tmp_path):
    from memviz.backends.registry import load_backend
    from memviz.errors import MemvizError
    from memviz.memory.store import MemoryStore
    from memviz.ui.app import create_window, store_model

    path = tmp_path / "m.sqlite"
    backend = load_backend(str(lstm_dir))
    MemoryStore.open(path, backend=backend, create=True).close()
    assert store_model(path) == backend.info.source
    with pytest.raises(MemvizError, match="no memory store"):
        store_model(tmp_path / "none.sqlite")

    window = create_window(model=store_model(path), memory=path, settings=settings)
    qtbot.addWidget(window)
    try:
        qtbot.waitUntil(lambda: window.memory_controls.store is not None, timeout=60_000)
        assert window.memory_controls.store.path == path
    finally:
        window.shutdown()

    # --model of another model: a clear error, memory stays off
    other = create_window(model=str(gpt2_dir), memory=path, settings=settings)
    qtbot.addWidget(other)
    try:
        qtbot.waitUntil(lambda: other.error_box is not None, timeout=60_000)
        assert "belongs to model" in other.error_box.informativeText()
        assert other.memory_controls.store is None
    finally:
        other.shutdown()


def test_gui_memory_on_the_command_line_is_checked_before_a_window(tmp_path, capsys):
    from memviz.cli import main

    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    assert main(["gui", "--memory", str(bad)]) == 2
    assert "not a memviz memory store" in capsys.readouterr().err


# -- 3. stale panels -------------------------------------------------------------------------------
def _assert_panels_show(window, trace):
    for name, panel in window.panels.items():
        assert panel.trace is trace, name
    state = window.view.state
    assert window.layer_spin.value() == state.layer and window.unit_spin.value() == state.unit


def test_panels_show_the_new_run_after_a_reset_and_a_model_switch(qtbot, make_window, lstm_dir, gpt2_dir):
    window = make_window()
    load(qtbot, window, gpt2_dir, text="The fox and the dog")
    play_to_end(qtbot, window)
    gpt2_labels = list(window.panels["distribution"].labels)
    assert gpt2_labels and window.panels["attention"].step == len(window.trace) - 1
    assert "query" in window.panels["attention"].note.text()

    window.reset()
    qtbot.waitUntil(lambda: window.trace is not None and len(window.trace) == 0, timeout=10_000)
    window.redraw()
    _assert_panels_show(window, window.trace)
    assert window.panels["distribution"].labels == []  # nothing of the previous run
    assert window.panels["attention"].step == -1 and "query" not in window.panels["attention"].note.text()

    window.view.update(layer=1)
    load(qtbot, window, lstm_dir, text="abc")
    window.redraw()
    _assert_panels_show(window, window.trace)
    assert list(window.panels["distribution"].labels) == []  # no GPT-2 tokens under the LSTM
    play_to_end(qtbot, window)
    labels = window.panels["distribution"].labels
    vocab = set(window.trace.vocab.values())
    assert labels and all(label in vocab or label.strip() == "" or len(label) <= 3 for label in labels)
    assert window.view.state.layer == window.layer_spin.value()


def test_opening_a_trace_shows_its_text(qtbot, make_window, lstm_dir, tmp_path):
    window = make_window()
    load(qtbot, window, lstm_dir, text="abcabc")
    play_to_end(qtbot, window)
    path = tmp_path / "run.memviz"
    window.export_actions.save_session(path)
    window.editor.setPlainText("something else entirely")
    window.open_trace(path)
    assert window.editor.text() == "abcabc"


# -- 5. keys ------------------------------------------------------------------------------------------
def test_ctrl_enter_reads_and_gives_the_keys_to_the_player_esc_gives_them_back(qtbot, make_window, lstm_dir):
    window = make_window()
    load(qtbot, window, lstm_dir, text="abc")
    editor = window.editor
    editor.setFocus()
    qtbot.waitUntil(editor.hasFocus, timeout=2_000)
    assert "Ctrl+Enter" in window.status.keys_label.text()
    editor.moveCursor(editor.textCursor().MoveOperation.End)
    qtbot.keyClick(editor, Qt.Key_Space)  # typing: a space is a space
    qtbot.keyClicks(editor, "ab")
    assert editor.text() == "abc ab" and window.trace is not None and len(window.trace) == 0
    before = window.runs_finished
    qtbot.keyClick(editor, Qt.Key_Return, Qt.ControlModifier)
    qtbot.waitUntil(lambda: window.runs_finished > before, timeout=30_000)
    assert not editor.hasFocus() and window.strip.hasFocus()
    assert window.trace.token_text == list("abc ab")
    assert "Space" in window.status.keys_label.text()
    # the keys now belong to the player: Left steps back, nothing is typed
    cursor = window.view.state.cursor
    qtbot.keyClick(window.strip, Qt.Key_Left)
    assert window.view.state.cursor == cursor - 1 and editor.text() == "abc ab"
    # Esc: back to the editor; Esc again: back to the player
    qtbot.keyClick(window.strip, Qt.Key_Escape)
    qtbot.waitUntil(editor.hasFocus, timeout=2_000)
    qtbot.keyClick(editor, Qt.Key_Escape)
    qtbot.waitUntil(window.strip.hasFocus, timeout=2_000)


# -- 7. memory UX ------------------------------------------------------------------------------------
def test_switching_model_says_memory_went_off_and_opens_the_new_models_store(
    qtbot, make_window, lstm_dir, gpt2_dir, tmp_path
):
    from memviz.backends.registry import load_backend
    from memviz.memory.store import MemoryStore, default_store_path

    window = make_window()
    load(qtbot, window, lstm_dir, text="abc")
    controls = window.memory_controls
    assert "distance\u00b2" in controls.scores_label.text()
    assert controls.k_spin.maximum() <= 4096
    controls.open_store(str(tmp_path / "lstm.sqlite"), create=True)
    qtbot.waitUntil(lambda: controls.store is not None, timeout=30_000)
    # the GPT-2 has no store yet: said so
    load(qtbot, window, gpt2_dir, text="The fox")
    assert controls.store is None
    assert "memory off: lstm.sqlite belongs to" in controls.notice_label.text()
    assert "has no store yet" in controls.notice_label.text()
    assert any("memory off: lstm.sqlite" in m for m in window.messages)
    # back to the LSTM, with a default store of its own now: opened
    backend = load_backend(str(lstm_dir))
    MemoryStore.open(None, backend=backend, create=True).close()
    controls.open_store(str(tmp_path / "gpt2.sqlite"), create=True)
    qtbot.waitUntil(lambda: controls.store is not None, timeout=30_000)
    load(qtbot, window, lstm_dir, text="abc")
    qtbot.waitUntil(lambda: controls.store is not None, timeout=30_000)
    assert controls.store.path == default_store_path(backend.info.name)


# -- 8. steps, the unsaved run, the animation's panel ---------------------------------------------------
def test_steps_are_zero_based_in_the_status_bar_as_on_the_panels(qtbot, make_window, lstm_dir):
    window = make_window()
    load(qtbot, window, lstm_dir, text="abcdef")
    play_to_end(qtbot, window)
    window.scrub_to(3)
    window.redraw()
    assert window.step_label.text() == "step 3 of 0\u20135"
    panel = window.panels["gates"] if "gates" in window.panels else next(iter(window.panels.values()))
    assert "step 3" in panel.figure_title(window.view.state)


def test_quitting_with_an_unsaved_run_asks(qtbot, make_window, lstm_dir, tmp_path, monkeypatch):
    window = make_window()
    window.ask_before_discarding = True
    load(qtbot, window, lstm_dir, text="abc")
    asked = []

    def answer(button):
        def question(*args, **kwargs):
            asked.append(args[2])
            return button

        monkeypatch.setattr(QMessageBox, "question", staticmethod(question))

    answer(QMessageBox.Cancel)
    window.choose_model(str(lstm_dir))  # nothing read yet: no question
    assert not asked
    qtbot.waitUntil(lambda: window.info is not None and window._loading is None, timeout=60_000)
    window.transport.set_speed(0)
    play_to_end(qtbot, window)
    window.close()
    assert asked and "3 steps" in asked[-1] and window.isVisible()  # Cancel: stays
    answer(QMessageBox.Save)
    out = tmp_path / "kept.memviz"
    monkeypatch.setattr(window.export_actions, "_save_name", lambda *a: str(out))
    window.close()
    assert out.exists() and not window.isVisible()  # saved, then quit

    # a saved run is not asked about; Discard lets it go
    window = make_window()
    window.ask_before_discarding = True
    load(qtbot, window, lstm_dir, text="abc")
    play_to_end(qtbot, window)
    window.export_actions.save_session(tmp_path / "saved.memviz")
    asked.clear()
    window.close()
    assert not asked and not window.isVisible()  # saved: nothing to lose, no question

    window = make_window()
    window.ask_before_discarding = True
    load(qtbot, window, lstm_dir, text="abc")
    play_to_end(qtbot, window)
    answer(QMessageBox.Discard)
    window.choose_model(str(lstm_dir))
    assert asked
    qtbot.waitUntil(lambda: window.trace is not None and len(window.trace) == 0, timeout=30_000)


def test_export_animation_lets_the_dialog_choose_the_panel(
    qtbot, make_window, lstm_dir, tmp_path, monkeypatch
):
    window = make_window()
    load(qtbot, window, lstm_dir, text="abcd")
    play_to_end(qtbot, window)
    actions = window.export_actions
    names = list(window.panels)
    wanted = names[-1]
    started = []
    monkeypatch.setattr(actions, "_save_name", lambda *a: str(tmp_path / "a.gif"))
    monkeypatch.setattr(actions, "start_animation", lambda panel, *a, **k: started.append(panel))

    def fill() -> None:
        dialog = next(w for w in QApplication.topLevelWidgets() if w.objectName() == "animationDialog")
        combo = dialog.findChild(QComboBox, "animationPanel")
        assert [combo.itemData(i) for i in range(combo.count())] == names
        combo.setCurrentIndex(combo.findData(wanted))
        dialog.accept()

    window.panels[names[0]].setFocus()
    QTimer.singleShot(100, fill)
    actions.export_animation_action.trigger()
    assert started == [window.panels[wanted]]
    assert isinstance(actions.animation_dialog, QDialog)


def test_panel_export_scale_is_bounded_like_the_cli(qtbot, make_window, lstm_dir, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from memviz.options import SCALE_RANGE

    window = make_window()
    load(qtbot, window, lstm_dir, text="abcd")
    play_to_end(qtbot, window)
    actions = window.export_actions
    panel = next(iter(window.panels.values()))
    low, high = actions.scale_range(panel)
    assert (low, high) == (SCALE_RANGE[0], SCALE_RANGE[1])  # a normal dock: the CLI's bounds
    monkeypatch.setattr(actions, "_size_of", lambda _p: (4000, 3000))
    low, high = actions.scale_range(panel)
    assert high * 4000 <= 16384 and high**2 * 4000 * 3000 <= 64_000_000 and high < SCALE_RANGE[1]
    seen = []

    def get_double(parent, title, label, value, lo, hi, decimals):
        seen.append((lo, hi))
        return hi * 10, False  # cancelled

    monkeypatch.setattr(QInputDialog, "getDouble", staticmethod(get_double))
    monkeypatch.setattr(actions, "_save_name", lambda *a: str(tmp_path / "f.png"))
    actions.export_figure_dialog(panel)
    assert seen == [(low, high)] and not (tmp_path / "f.png").exists()


# -- 10. binary files ------------------------------------------------------------------------------
def test_a_binary_file_is_refused_and_warnings_are_shown(qtbot, make_window, tmp_path):
    window = make_window()
    before = window.editor.text()
    elf = tmp_path / "prog"
    elf.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    assert not window.editor.load_file(elf)
    assert window.editor.text() == before
    assert window.error_box is not None and "binary file" in window.error_box.informativeText()
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    assert window.editor.load_file(latin)
    assert window.messages[-1].startswith("warning: ") and "not valid UTF-8" in window.messages[-1]
    assert window.error_box is not None and "UTF-8" in window.error_box.informativeText()


# -- 4. the window's sizes -----------------------------------------------------------------------------
def test_minimum_sizes_and_reset_layout_is_the_first_layout(qtbot, make_window, lstm_dir, settings):
    window = make_window()
    window.resize(400, 300)
    qtbot.wait(50)
    assert window.width() >= 960 and window.height() >= 600
    window.resize(1500, 950)
    load(qtbot, window, lstm_dir, text="abc")
    qtbot.wait(100)
    first = {name: dock.geometry() for name, dock in window.docks.items()}
    for dock in window.docks.values():
        assert dock.width() >= 240 and dock.height() >= 160
    window.reset_layout()
    qtbot.wait(100)
    again = {name: dock.geometry() for name, dock in window.docks.items()}
    assert again == first
