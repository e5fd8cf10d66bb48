"""Pattern search in the app (issue 17 item 4): the Pattern matches panel lists a search's matches
(checked against a brute-force loop over every span), a click moves the cursor, its CSV is the CLI's;
Run -> Find similar... searches the window's run on the right thread (LSTM: model-free; GPT-2: the
worker, which owns the model) and a new run drops the matches."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from PySide6.QtCore import Qt

from memviz.core import search as pattern
from memviz.errors import MemvizError
from memviz.export.data import read_csv_values
from memviz.panels.match import MatchPanel, publish, result_for

REPEAT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n"


def brute_force(states: np.ndarray, a: int, b: int, top: int) -> list[tuple[int, float]]:
    """[(start, distance)]: Euclidean distance of every span by hand, nearest first, non-overlapping."""
    n = b - a + 1
    rows = states.astype(np.float64).tolist()
    scored = []
    for s in range(len(rows) - n + 1):
        if s <= b and s + n - 1 >= a:
            continue
        total = sum((x - q) ** 2 for j in range(n) for x, q in zip(rows[s + j], rows[a + j], strict=True))
        scored.append((math.sqrt(total), s))
    chosen: list[tuple[int, float]] = []
    for d, s in sorted(scored):
        if len(chosen) < top and all(s + n - 1 < c or s > c + n - 1 for c, _ in chosen):
            chosen.append((s, d))
    return chosen


@pytest.fixture(scope="module")
def lstm_trace(lstm_dir, run_session):
    return run_session(lstm_dir, REPEAT * 3).trace


def click_row(qtbot, panel: MatchPanel, row: int) -> None:
    index = panel.table.model().index(row, 1)
    qtbot.mouseClick(panel.table.viewport(), Qt.LeftButton, pos=panel.table.visualRect(index).center())


def test_panel_lists_the_matches_and_a_click_moves_the_cursor(lstm_trace, make_panel, qtbot, tmp_path):
    trace = lstm_trace
    query = pattern.Query(layer=1, start=150, end=158, units=(2, 7, 11), top=6)
    publish(trace, pattern.search(trace, query))
    assert MatchPanel.supports(trace)
    view, panel = make_panel(MatchPanel, trace, cursor=len(trace) - 1)
    expected = brute_force(trace.array("hidden")[:, 1, [2, 7, 11]], 150, 158, 6)
    table = panel.table
    assert table.rowCount() == 6
    shown = [(table.item(r, 0).text(), table.item(r, 1).text()) for r in range(6)]
    assert shown == [(str(k), f"{s}-{s + 8}") for k, (s, _) in enumerate(expected, start=1)]
    distances = [float(table.item(r, 2).text()) for r in range(6)]
    np.testing.assert_allclose(distances, [d for _, d in expected], rtol=1e-3, atol=1e-7)  # 4 digits
    before, text, after = table.item(0, 3).data(Qt.ItemDataRole.UserRole)
    labels = trace.token_labels
    start = expected[0][0]
    assert text == "".join(labels[start : start + 9]).replace("\n", "\u23ce")
    assert "steps 150-158 of layer 1, units 2,7,11" in panel.heading.text()

    click_row(qtbot, panel, 2)
    assert panel.selected is panel.result.matches[2]
    assert view.state.cursor == expected[2][0] + 8 and view.state.follow is False
    assert [i.row() for i in table.selectionModel().selectedRows()] == [2]


def test_panel_csv_is_the_cli_csv(lstm_trace, make_panel, tmp_path, capsys):
    from memviz.cli import main

    trace = lstm_trace
    path = tmp_path / "run.memviz"
    trace.save(path)
    out = tmp_path / "cli.csv"
    argv = ["search", "--trace", str(path), "--layer", "0", "--steps", "100-110", "--top", "5"]
    assert main([*argv, "--csv", str(out)]) == 0
    capsys.readouterr()
    publish(trace, pattern.search(trace, pattern.Query(layer=0, start=100, end=110, top=5)))
    _, panel = make_panel(MatchPanel, trace, cursor=110)
    header, rows = read_csv_values(out)
    assert [[str(v) for v in row] for row in panel.rows()] == [header, *rows]


def test_panel_without_a_result_is_not_offered(run_session, lstm_dir):
    trace = run_session(lstm_dir, "abc abc").trace
    assert result_for(trace) is None and not MatchPanel.supports(trace)


# -- the window ----------------------------------------------------------------------------------------
def load_and_read(qtbot, window, folder, text: str) -> None:
    window.editor.setPlainText(text)
    window.load_model(str(folder))
    qtbot.waitUntil(lambda: window.info is not None and window._loading is None, timeout=60_000)
    window.transport.set_speed(0)
    before = window.runs_finished
    window.set_playing(True)
    qtbot.waitUntil(lambda: window.runs_finished > before, timeout=60_000)


def search_in_window(qtbot, window, query: pattern.Query) -> MatchPanel:
    assert window.match_actions.find(query), window.match_actions.last_error
    qtbot.waitUntil(lambda: window.match_actions.job.ended, timeout=60_000)
    qtbot.waitUntil(
        lambda: "match" in window.panels and window.panels["match"].result is not None, timeout=10_000
    )
    return window.panels["match"]


def test_find_similar_in_the_window_lstm(qtbot, make_window, lstm_dir, tmp_path):
    window = make_window()
    load_and_read(qtbot, window, lstm_dir, REPEAT * 3)
    trace = window.trace
    assert "match" not in window.panels and window.match_actions.find_action.isEnabled()
    n = len(REPEAT)
    query = pattern.Query(layer=2, start=2 * n + 30, end=2 * n + 39, top=4)
    panel = search_in_window(qtbot, window, query)
    expected = brute_force(trace.array("hidden")[:, 2], query.start, query.end, 4)
    assert [m.start for m in panel.result.matches] == [s for s, _ in expected]
    assert panel.result.matches[0].start == n + 30  # the planted repeat: the other copy first
    click_row(qtbot, panel, 0)
    assert window.view.state.cursor == n + 39
    assert window.strip_view.strip.marked_span == (n + 30, n + 39)  # outlined in the token strip
    # the panel's right-click "Export data (CSV)..." writes its own rows, not a trace series
    out = tmp_path / "matches.csv"
    window.export_actions._save_name = lambda *_args: str(out)
    window.export_actions.export_csv_dialog(panel)
    with open(out, newline="", encoding="utf-8") as handle:
        assert [[str(v) for v in row] for row in panel.rows()] == list(csv.reader(handle))

    # a query the run cannot answer: one message, nothing runs
    assert not window.match_actions.find(pattern.Query(layer=2, start=5, end=len(trace)))
    assert "out of range" in window.match_actions.last_error

    # a new run: its panels are made for it, the old matches are not offered
    window.reset()
    qtbot.waitUntil(lambda: window.trace is not trace, timeout=30_000)
    qtbot.waitUntil(lambda: "match" not in window.panels, timeout=10_000)


def test_find_similar_in_the_window_gpt2_runs_on_the_worker(qtbot, make_window, gpt2_dir):
    from memviz.backends.layer_states import layer_states
    from memviz.backends.registry import load_backend

    window = make_window()
    load_and_read(qtbot, window, gpt2_dir, REPEAT * 2)
    trace = window.trace
    half = len(trace) // 2
    query = pattern.Query(layer=1, start=half + 2, end=half + 5, top=3)
    panel = search_in_window(qtbot, window, query)
    states = layer_states(load_backend(str(gpt2_dir), device="cpu"), trace.token_ids, 1)
    expected = brute_force(states, query.start, query.end, 3)
    assert [m.start for m in panel.result.matches] == [s for s, _ in expected]
    assert panel.result.matches[0].start == 2  # the other copy
    np.testing.assert_allclose(
        [m.distance for m in panel.result.matches], [d for _, d in expected], rtol=1e-4
    )
    # the transformer refuses units, in one message
    assert not window.match_actions.find(pattern.Query(layer=1, start=2, end=4, units=(1,)))
    assert "units" in window.match_actions.last_error


def test_panel_says_where_a_document_match_is(lstm_dir, lstm_trace, make_panel, qtbot, tmp_path):
    """A store's documents searched too: the steps column says where (the document or the run), and a
    click on a document's match leaves the cursor where it was."""
    from memviz.backends.registry import load_backend
    from memviz.memory.store import MemoryStore

    backend = load_backend(str(lstm_dir))
    trace = lstm_trace
    with MemoryStore.open(tmp_path / "m.sqlite", backend=backend, create=True) as store:
        store.add_document("x = 1\n" + REPEAT, "doc.txt", backend)
        n = len(REPEAT)
        query = pattern.Query(layer=1, start=2 * n + 40, end=2 * n + 49, top=4)
        result = pattern.search(trace, query, backend=backend, store=store)
    publish(trace, result)
    view, panel = make_panel(MatchPanel, trace, cursor=5)
    assert panel.table.horizontalHeaderItem(1).text() == "where"
    cells = [panel.table.item(r, 1).text() for r in range(panel.table.rowCount())]
    assert cells == [f"{m.source} {m.start}-{m.end}" for m in result.matches]
    doc_rows = [r for r, m in enumerate(result.matches) if not m.in_run]
    assert doc_rows and result.matches[doc_rows[0]].start == 6 + 40  # the copy in the document
    click_row(qtbot, panel, doc_rows[0])
    assert panel.selected is result.matches[doc_rows[0]] and view.state.cursor == 5


def test_find_similar_dialog_defaults_to_the_steps_ending_at_the_cursor(lstm_trace, qtbot):
    from PySide6.QtWidgets import QWidget

    from memviz.ui.match_actions import FindSimilarDialog

    parent = QWidget()
    qtbot.addWidget(parent)
    dialog = FindSimilarDialog(parent, lstm_trace, cursor=40, layer=2, store_name=None)
    query = dialog.query()
    assert (query.start, query.end, query.layer, query.units, query.metric) == (36, 40, 2, None, "euclidean")
    assert dialog.preview.text() == f"\u201c{''.join(lstm_trace.token_labels[36:41])}\u201d"
    assert not dialog.store.isEnabled()
    dialog.units.setText("3,17")
    dialog.distance.setCurrentText("binary")
    dialog.start.setValue(50)  # the ends in either order
    query = dialog.query()
    assert (query.start, query.end, query.units, query.metric) == (40, 50, (3, 17), "binary")
    dialog.units.setText("3,x")
    with pytest.raises(MemvizError):
        dialog.query()
