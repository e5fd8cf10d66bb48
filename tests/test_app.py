"""The application shell, on the offscreen platform with real tiny models: launch, load, step,
scrub, click a token, generate, switch theme, docks and their saved layout, and responsiveness."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QTimer, QUrl  # noqa: E402
from PySide6.QtGui import QAction, QDropEvent  # noqa: E402
from PySide6.QtWidgets import QLabel  # noqa: E402

from memviz.errors import MemvizError  # noqa: E402
from memviz.panels import registry as panel_registry  # noqa: E402
from memviz.panels.base import Panel  # noqa: E402
from memviz.ui.main_window import MainWindow  # noqa: E402
from memviz.ui.token_strip import NEGATIVE, POSITIVE, signal_values  # noqa: E402

TEXT = "def f(x): return x + 1\n"


@pytest.fixture(autouse=True)
def _no_unsaved_run_question(monkeypatch):
    """pytest-qt closes the windows before the fixtures shut them down: nobody answers a question."""
    from memviz.ui.main_window import MainWindow

    monkeypatch.setattr(MainWindow, "ask_before_discarding", False)


class RecordingPanel(Panel):
    """A stand-in panel that records what the window asks of it."""

    name = "recording"
    title = "Recording"
    architectures = ()

    def __init__(self, view, parent=None) -> None:
        super().__init__(view, parent)
        self.rendered: list = []
        self.themes: list[str] = []
        self.label = QLabel("", self)

    def render(self, state) -> None:
        self.rendered.append((state.cursor, len(self.trace) if self.trace is not None else -1))
        self.label.setText(f"cursor {state.cursor}")

    def apply_theme(self, state) -> None:
        self.themes.append(state.theme)


class LSTMOnlyPanel(RecordingPanel):
    name = "lstm-only"
    title = "LSTM only"
    architectures = ("lstm",)


class GPT2OnlyPanel(RecordingPanel):
    name = "gpt2-only"
    title = "GPT-2 only"
    architectures = ("gpt2",)


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "memviz.ini"), QSettings.IniFormat)


@pytest.fixture
def make_window(qtbot, settings):
    windows = []

    def make(s=None):
        window = MainWindow(settings=s or settings)
        qtbot.addWidget(window)
        window.show()
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow, timeout=5_000)  # shortcuts act in the active window
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.shutdown()


def load(qtbot, window, folder, text=TEXT):
    window.editor.setPlainText(text)
    window.load_model(str(folder))
    qtbot.waitUntil(lambda: window.info is not None and window._loading is None, timeout=60_000)
    assert window.info.source.endswith(folder.name)
    window.transport.set_speed(0)  # as fast as the model goes


def wait_run(qtbot, window, start, timeout=60_000):
    """Wait until the run that `start()` begins has ended."""
    before = window.runs_finished
    start()
    qtbot.waitUntil(lambda: window.runs_finished > before, timeout=timeout)


def play_to_end(qtbot, window):
    wait_run(qtbot, window, lambda: window.set_playing(True))
    qtbot.waitUntil(lambda: not window._redraw_timer.isActive(), timeout=5_000)


def test_launch_shows_the_shell(make_window):
    window = make_window()
    titles = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert titles == ["File", "View", "Run"]
    file_items = [a.text() for a in window.file_menu.actions() if not a.isSeparator()]
    assert file_items[:4] == ["Open text...", "Model...", "Open model folder...", "Open trace..."]
    assert file_items[-1] == "Quit"
    assert window.model_label.text() == "no model"
    assert window.step_label.text() == "no steps yet"
    assert not window.transport.reset_action.isEnabled()
    assert window.editor.text()  # a sample prompt is ready to read
    keys = {
        a.text(): a.shortcut().toString()
        for a in (
            window.transport.play_action,
            window.transport.forward_action,
            window.transport.back_action,
            window.transport.reset_action,
        )
    }
    assert keys == {"Play": "Space", "Step forward": "Right", "Step back": "Left", "Reset": "Home"}


def test_file_menu_has_room_for_more(make_window):
    window = make_window()
    export = QAction("Export...", window)
    window.add_file_action(export)
    items = [a for a in window.file_menu.actions() if not a.isSeparator()]
    assert items[-2] is export and items[-1] is window.quit_action


def test_lstm_step_scrub_and_click(qtbot, make_window, lstm_dir):
    window = make_window()
    load(qtbot, window, lstm_dir)
    assert window.view.state.signal == "unit"  # an LSTM has no attention: tint by a unit
    assert not window._spin_actions["head"][1].isVisible() and window._spin_actions["unit"][1].isVisible()
    strip = window.strip
    for _ in range(5):
        qtbot.keyClick(strip, Qt.Key_Right)
        qtbot.waitUntil(lambda n=_: window.trace is not None and len(window.trace) == n + 1, timeout=10_000)
    qtbot.waitUntil(lambda: window.view.state.cursor == 4, timeout=5_000)
    trace = window.trace
    assert trace.token_text == list(TEXT[:5])
    assert window.view.state.follow

    # Scrubbing back moves the cursor only: nothing is read, nothing recomputed.
    hidden_before = trace.array("hidden").copy()
    qtbot.keyClick(strip, Qt.Key_Left)
    qtbot.keyClick(strip, Qt.Key_Left)
    qtbot.wait(100)
    assert window.view.state.cursor == 2 and not window.view.state.follow
    assert len(trace) == 5
    np.testing.assert_array_equal(trace.array("hidden"), hidden_before)
    # ... and forward again, within the trace, still nothing new.
    qtbot.keyClick(strip, Qt.Key_Right)
    qtbot.wait(100)
    assert window.view.state.cursor == 3 and len(trace) == 5

    # Click a token to scrub to it.
    window.redraw()
    rect = strip.token_rect(1)
    qtbot.mouseClick(strip, Qt.LeftButton, pos=rect.center())
    assert window.view.state.cursor == 1
    window.redraw()
    assert window.step_label.text() == "step 1 of 0\u20134"  # 0-based, as on the axes
    assert strip.token_marks(1)["current"] and not strip.token_marks(2)["current"]
    assert window.context_label.text() == "context 5 (no window)"  # no cap: it reads any length
    assert "lstm" in window.model_label.text().lower()


def test_lstm_strip_shows_the_trace(qtbot, make_window, lstm_dir):
    window = make_window()
    load(qtbot, window, lstm_dir)
    play_to_end(qtbot, window)
    trace = window.trace
    assert len(trace) == len(TEXT)
    window.generate_bar.count.setValue(7)
    window.generate_bar.temperature.setValue(0.0)
    wait_run(qtbot, window, window.generate)
    assert len(trace) == len(TEXT) + 7
    window.view.update(layer=1, unit=3)
    window.redraw()
    strip = window.strip
    assert strip.token_count() == len(trace)
    hidden = trace.array("hidden")[:, 1, 3]
    np.testing.assert_array_equal(strip.values(), hidden)
    for i in range(len(trace)):
        marks = strip.token_marks(i)
        assert marks["generated"] == (i >= len(TEXT))
        assert marks["value"] == pytest.approx(float(hidden[i]))
        color = marks["color"]
        expected = POSITIVE if hidden[i] >= 0 else NEGATIVE
        assert (color.red(), color.green(), color.blue()) == (
            expected.red(),
            expected.green(),
            expected.blue(),
        )
        assert color.alphaF() == pytest.approx(min(1.0, abs(float(hidden[i]))) * 0.85, abs=1 / 255)
    assert strip.token_marks(len(trace) - 1)["current"]
    assert [strip.token_marks(i)["text"] for i in range(3)] == ["d", "e", "f"]
    assert strip.token_marks(len(TEXT) - 1)["text"] == "\u21b5"  # the newline, made visible

    window.view.update(signal="cell")
    window.redraw()
    np.testing.assert_array_equal(strip.values(), trace.array("cell")[:, 1, 3])
    tip = strip.tooltip_text(2)
    assert "'f'" in tip and "step 3" in tip


def test_gpt2_play_generate_and_attention_tint(qtbot, make_window, gpt2_dir):
    window = make_window()
    load(qtbot, window, gpt2_dir, text="The quick brown fox")
    assert window.view.state.signal == "attention"
    play_to_end(qtbot, window)
    trace = window.trace
    n = len(trace)
    assert n > 3 and not any(trace.generated)
    window.generate_bar.count.setValue(10)
    window.generate_bar.seed.setValue(5)
    wait_run(qtbot, window, window.generate)
    assert len(trace) == n + 10
    assert trace.generated == [False] * n + [True] * 10
    assert trace.sampling["seed"] == 5
    window.head_spin.setValue(2)
    window.layer_spin.setValue(1)
    assert (window.view.state.layer, window.view.state.head) == (1, 2)
    window.scrub_to(n + 4)
    window.redraw()
    values = window.strip.values()
    np.testing.assert_array_equal(values[: n + 5], trace.attention_at(n + 4)[1, 2])
    assert np.isnan(values[n + 5 :]).all()  # tokens after the cursor: no attention, no tint
    assert window.strip.token_color(n + 6) is None
    np.testing.assert_array_equal(values, signal_values(trace, window.view.state, "attention"))
    assert window.context_label.text() == f"context {n + 10} / 128"
    assert window.step_label.text() == f"step {n + 4} of 0\u2013{n + 9}"
    assert window.rate_label.text().endswith("tok/s")


def test_theme_switch(qtbot, make_window, settings):
    window = make_window()
    assert window.view.state.theme == "dark"
    window.theme_actions["talk"].trigger()
    assert window.view.state.theme == "talk"
    assert "14pt" in window.styleSheet()
    assert window.theme_actions["talk"].isChecked() and not window.theme_actions["dark"].isChecked()
    assert settings.value("view/theme") == "talk"
    window.set_theme("dark")
    assert "10pt" in window.styleSheet()
    with pytest.raises(MemvizError):
        window.set_theme("neon")


def test_docks_follow_panel_classes_and_layout_is_remembered(
    qtbot, make_window, monkeypatch, lstm_dir, gpt2_dir, settings
):
    monkeypatch.setattr(panel_registry, "PANEL_CLASSES", [RecordingPanel, LSTMOnlyPanel, GPT2OnlyPanel])
    window = make_window()
    load(qtbot, window, lstm_dir, text="abc")
    assert set(window.docks) == {"recording", "lstm-only"}
    panel = window.panel("lstm-only")
    assert panel.trace is window.trace
    assert window.docks["lstm-only"].objectName() == "dock-lstm-only"
    play_to_end(qtbot, window)
    assert panel.rendered[-1] == (2, 3)  # drawn at the last step from the full trace
    window.step_back()
    window.redraw()
    assert panel.rendered[-1] == (1, 3)

    # Closing a dock hides it; the View menu brings it back.
    dock = window.docks["lstm-only"]
    dock.close()
    toggles = {a.text(): a for a in window.panels_menu.actions()}
    assert not toggles["LSTM only"].isChecked()
    toggles["LSTM only"].trigger()
    assert dock.isVisible()

    # The theme reaches the panels.
    window.set_theme("talk")
    assert panel.themes[-1] == "talk"

    # Another architecture: its panels replace the LSTM's.
    load(qtbot, window, gpt2_dir, text="The fox")
    assert set(window.docks) == {"recording", "gpt2-only"}
    assert window.panel("recording").trace is window.trace

    # Back to the LSTM with its dock closed: the next window remembers that.
    load(qtbot, window, lstm_dir, text="abc")
    window.docks["lstm-only"].close()
    window.shutdown()
    second = make_window(settings)
    load(qtbot, second, lstm_dir, text="abc")
    assert set(second.docks) == {"recording", "lstm-only"}
    assert second.docks["lstm-only"].isHidden()
    assert not second.docks["recording"].isHidden()
    second.reset_layout()
    assert not second.docks["lstm-only"].isHidden()


def test_works_with_no_panels(qtbot, make_window, monkeypatch, lstm_dir):
    monkeypatch.setattr(panel_registry, "PANEL_CLASSES", [])
    window = make_window()
    load(qtbot, window, lstm_dir, text="ab")
    play_to_end(qtbot, window)
    assert window.docks == {} and len(window.trace) == 2
    assert [a.text() for a in window.panels_menu.actions()] == ["(no panels for this model)"]


def test_a_broken_panel_does_not_break_the_window(qtbot, make_window, monkeypatch, lstm_dir):
    class Broken(RecordingPanel):
        name = "broken"
        title = "Broken"

        def render(self, state):
            raise RuntimeError("boom")

    monkeypatch.setattr(panel_registry, "PANEL_CLASSES", [Broken])
    window = make_window()
    load(qtbot, window, lstm_dir, text="ab")
    play_to_end(qtbot, window)
    assert len(window.trace) == 2
    assert any("Broken" in m and "render failed" in m for m in window.messages)


def test_load_failure_shows_the_reason(qtbot, make_window, tmp_path):
    window = make_window()
    picker = window.show_model_picker()
    picker.choose(str(tmp_path / "missing-model"))
    qtbot.waitUntil(lambda: window.error_box is not None, timeout=20_000)
    box = window.error_box
    assert box.isVisible()
    assert "missing-model" in box.informativeText() and "\n" not in box.informativeText()
    assert "missing-model" in picker.status.text()
    assert picker.isVisible() and picker.bundled_list.isEnabled()
    assert window.info is None
    box.close()


def test_picker_remembers_loaded_folders(qtbot, make_window, settings, lstm_dir):
    window = make_window()
    picker = window.show_model_picker()
    picker.choose(str(lstm_dir))
    qtbot.waitUntil(lambda: window.info is not None, timeout=30_000)
    assert not picker.isVisible()
    assert window.show_model_picker().recent_list.item(0).text() == str(lstm_dir)
    from memviz.ui.model_picker import recent_models

    assert recent_models(settings) == [str(lstm_dir)]


def test_warnings_and_stop_reasons_reach_the_status_bar(qtbot, make_window, gpt2_dir, lstm_dir):
    window = make_window()
    load(qtbot, window, lstm_dir, text="ab\u00e9\u00e9")  # characters outside the vocabulary
    play_to_end(qtbot, window)
    assert any("vocabulary" in m for m in window.messages)
    load(
        qtbot, window, gpt2_dir, text="The quick brown fox jumps over the lazy dog. " * 40
    )  # 128-token window: cut
    play_to_end(qtbot, window)
    assert any("context window" in m for m in window.messages)
    window.generate_bar.count.setValue(5)
    window.generate()
    qtbot.waitUntil(lambda: any("context window full" in m for m in window.messages), timeout=20_000)


def test_text_file_open_and_drop(qtbot, make_window, tmp_path):
    window = make_window()
    path = tmp_path / "prompt.txt"
    path.write_text("import os\n", encoding="utf-8")
    assert window.editor.load_file(path)
    assert window.editor.text() == "import os\n"
    other = tmp_path / "dropped.py"
    other.write_text("print('hi')\n", encoding="utf-8")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(other))])
    event = QDropEvent(QPointF(5, 5), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    window.editor.dropEvent(event)
    assert window.editor.text() == "print('hi')\n"
    assert not window.editor.load_file(tmp_path / "nope.txt")
    qtbot.waitUntil(lambda: window.error_box is not None, timeout=2_000)
    assert "no such file" in window.error_box.informativeText()
    window.error_box.close()


def saved_lstm_trace(lstm_dir, tmp_path):
    """A saved run of the tiny LSTM: 5 tokens read ("hello"), 3 generated."""
    from memviz.backends.registry import load_backend
    from memviz.core.session import Session

    session = Session(load_backend(str(lstm_dir)))
    session.feed("hello")
    session.generate(3)
    session.run()
    return session.trace.save(tmp_path / "run.memviz")


def test_saved_trace_opens_without_a_model(qtbot, make_window, lstm_dir, tmp_path):
    window = make_window()
    window.open_trace(saved_lstm_trace(lstm_dir, tmp_path))
    window.redraw()
    assert window.step_label.text() == "step 7 of 0\u20137"
    assert "saved trace" in window.model_label.text()
    assert [window.strip.token_marks(i)["generated"] for i in range(8)] == [False] * 5 + [True] * 3
    assert not window.transport.reset_action.isEnabled()
    window.step_forward()
    assert window.messages[-1] == "end of the saved trace"
    # Replay: scrub to the start, play moves the cursor through the trace.
    window.scrub_to(0)
    window.transport.set_speed(100)
    window.set_playing(True)
    qtbot.waitUntil(lambda: window.view.state.cursor == 7, timeout=5_000)
    qtbot.waitUntil(lambda: not window.transport.play_action.isChecked(), timeout=5_000)


@pytest.fixture(scope="module")
def gpt2_long_dir(tmp_path_factory, gpt2_dir_factory):
    return gpt2_dir_factory(tmp_path_factory.mktemp("gpt2-long") / "tiny-gpt2-512", positions=512)


@pytest.mark.parametrize("panels", ["stand-in", "real"])
def test_ui_stays_responsive_while_generating(qtbot, make_window, monkeypatch, gpt2_long_dir, panels):
    """A UI-thread timer keeps firing while the worker generates many tokens (and panels redraw)."""
    if panels == "stand-in":
        monkeypatch.setattr(panel_registry, "PANEL_CLASSES", [RecordingPanel])
    window = make_window()
    load(qtbot, window, gpt2_long_dir, text="The quick brown fox")
    play_to_end(qtbot, window)
    start_len = len(window.trace)
    window.generate_bar.count.setValue(300)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    renders = window.render_count
    timer.start()
    wait_run(qtbot, window, window.generate, timeout=120_000)
    timer.stop()
    steps = len(window.trace) - start_len
    assert steps == 300
    gaps = np.diff(ticks)
    max_gap_ms = 1000 * float(gaps.max())
    print(
        f"\n[{panels} panels] max UI timer gap during generation of {steps} tokens: {max_gap_ms:.1f} ms "
        f"(median {1000 * float(np.median(gaps)):.1f} ms, {len(ticks)} ticks, "
        f"{window.render_count - renders} redraws)"
    )
    # The model runs off the UI thread: the timer never stalls for the run (a model stepped on the UI
    # thread stalls it for seconds). Bounds leave room for a loaded 2-core machine (CI, training).
    assert float(np.percentile(gaps, 95)) * 1000 < 250
    assert max_gap_ms < 1000
    assert window.render_count - renders <= steps + 2  # coalesced: never more redraws than steps
    if panels == "stand-in":
        window.redraw()
        assert window.panel("recording").rendered[-1][0] == len(window.trace) - 1


def test_initial_model_choice(monkeypatch, tmp_path):
    from memviz.backends import registry
    from memviz.ui import app

    def models(*names):
        return lambda: [registry.BundledModel(n, "lstm", tmp_path / n) for n in names]

    monkeypatch.setattr(registry, "bundled_models", models("a-model", registry.DEFAULT_MODEL))
    assert app.initial_model(None) == registry.DEFAULT_MODEL
    assert app.initial_model("other") == "other"
    monkeypatch.setattr(registry, "bundled_models", models("b-model", "c-model"))
    assert app.initial_model(None) == "b-model"
    monkeypatch.setattr(registry, "bundled_models", models())
    assert app.initial_model(None) is None


def test_no_bundled_model_opens_the_picker(qtbot, monkeypatch, settings):
    from memviz.ui import app

    monkeypatch.setattr(app, "initial_model", lambda requested: None)
    window = app.create_window(settings=settings)
    qtbot.addWidget(window)
    try:
        qtbot.waitUntil(lambda: window.picker is not None and window.picker.isVisible(), timeout=5_000)
        assert window.info is None
    finally:
        window.shutdown()


def test_gui_command_line(tmp_path, capsys):
    from memviz.cli import build_parser, main

    args = build_parser().parse_args(["gui", "--model", "m", "--text-file", "t.txt", "--play"])
    assert (args.model, args.text_file, args.play, args.trace) == ("m", "t.txt", True, None)
    assert main(["gui", "--model", "m", "--trace", "x.memviz"]) == 2
    assert "not allowed with" in capsys.readouterr().err
    # Bad files fail before any window opens: one line, exit 2.
    assert main(["gui", "--text-file", str(tmp_path / "missing.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
    assert main(["gui", "--trace", str(tmp_path / "missing.memviz")]) == 2
    assert "no such trace file" in capsys.readouterr().err


def test_click_outside_tokens_does_nothing(qtbot, make_window, lstm_dir):
    window = make_window()
    load(qtbot, window, lstm_dir, text="abc")
    play_to_end(qtbot, window)
    window.redraw()
    qtbot.mouseClick(
        window.strip, Qt.LeftButton, pos=QPoint(window.strip.width() - 5, window.strip.height() - 5)
    )
    assert window.view.state.cursor == 2


def test_right_click_on_a_panel_opens_its_export_menu(qtbot, make_window, lstm_dir, tmp_path):
    from PySide6.QtGui import QContextMenuEvent
    from PySide6.QtWidgets import QApplication, QGraphicsView

    window = make_window()
    window.open_trace(saved_lstm_trace(lstm_dir, tmp_path))
    window.redraw()
    panel = next(iter(window.panels.values()))
    viewport = panel.findChild(QGraphicsView).viewport()  # the deepest widget: where a right click lands
    shown: list[list[str]] = []

    def read_and_close() -> None:
        menu = QApplication.activePopupWidget()
        shown.append([a.text() for a in menu.actions()] if menu is not None else [])
        if menu is not None:
            menu.close()

    QTimer.singleShot(200, read_and_close)
    point = QPoint(10, 10)
    QApplication.sendEvent(
        viewport, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, point, viewport.mapToGlobal(point))
    )
    assert shown and shown[0][:2] == ["Export...", "Copy figure"]


def test_status_text_changes_do_not_relayout_the_window(qtbot, make_window, lstm_dir, tmp_path):
    """A new step's texts (status bar, panel notes) repaint their labels; the docks keep their layout."""
    from PySide6.QtCore import QEvent, QObject

    window = make_window()
    window.open_trace(saved_lstm_trace(lstm_dir, tmp_path))
    for step in range(8):  # the labels reserve room for the longest text they have shown
        window.scrub_to(step)
        window.redraw()
        qtbot.wait(10)
    qtbot.wait(50)

    class LayoutRequests(QObject):
        count = 0

        def eventFilter(self, obj, event) -> bool:  # noqa: N802
            if event.type() == QEvent.Type.LayoutRequest:
                LayoutRequests.count += 1
            return False

    counter = LayoutRequests()
    watched = [window, *window.docks.values()]
    for widget in watched:
        widget.installEventFilter(counter)
    for step in (1, 2, 3):
        window.scrub_to(step)
        window.redraw()
        qtbot.wait(20)
    assert window.step_label.text() == "step 3 of 0\u20137"
    assert LayoutRequests.count == 0
    # A text that needs more room than the label has does ask for a layout, once.
    window.step_label.setText("step 4 of 8, and a much longer text than before")
    qtbot.wait(20)
    assert LayoutRequests.count >= 1


def test_adding_documents_while_playing_pauses_visibly_and_play_resumes(
    qtbot, make_window, lstm_dir, tmp_path
):
    window = make_window()
    text = "The quick brown fox jumps over the lazy dog. " * 3
    load(qtbot, window, lstm_dir, text=text)
    controls = window.memory_controls
    controls.open_store(str(tmp_path / "m.sqlite"), create=True)
    qtbot.waitUntil(lambda: controls.store is not None, timeout=30_000)
    qtbot.waitUntil(lambda: any("run restarted" in m for m in window.messages), timeout=5_000)
    doc = tmp_path / "doc.txt"
    doc.write_text("lazy dog, quick fox. " * 2000)
    window.transport.set_speed(20)
    before = window.runs_finished
    window.set_playing(True)
    qtbot.waitUntil(lambda: window.trace is not None and len(window.trace) >= 3, timeout=20_000)
    controls.add_documents([str(doc)])
    qtbot.waitUntil(lambda: "adding documents" in window.transport.note.text(), timeout=20_000)
    assert not window.transport.play_action.isChecked()  # shown paused
    assert not window.transport.play_action.isEnabled()  # and nothing else steps meanwhile
    qtbot.waitUntil(lambda: not controls.busy, timeout=120_000)
    qtbot.waitUntil(lambda: window.transport.note.text() == "", timeout=10_000)
    assert window.playback.running == "play" and window.transport.play_action.isChecked()  # resumed
    assert "play paused while adding documents\u2026" in window.messages and "play resumed" in window.messages
    qtbot.waitUntil(lambda: window.runs_finished > before, timeout=60_000)
    assert window.trace.token_text == list(text)
    assert len(controls.store) == len("lazy dog, quick fox. " * 2000) - 1
