"""The Long-term memory panel, drawn offscreen from a real run with a real store: from the trace only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QImage

from memviz.backends.registry import load_backend
from memviz.core.session import RecallSettings, Session
from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.memory.store import MemoryStore
from memviz.panels.memory_panel import MemoryPanel
from memviz.panels.registry import PANEL_CLASSES
from memviz.panels.view_model import ViewModel


@pytest.fixture(scope="module")
def run(tmp_path_factory, gpt2_dir):
    backend = load_backend(str(gpt2_dir))
    store = MemoryStore.open(tmp_path_factory.mktemp("panel") / "m.sqlite", backend=backend, create=True)
    store.add_document("The quick brown fox jumps over the lazy dog.\n", "fox.txt", backend)
    session = Session(backend, memory=store, recall=RecallSettings(k=6, lam=0.5))
    session.feed("The quick brown fox jumps")
    session.run()
    return session, store


def make(qtbot, trace, cursor, theme="dark"):
    view = ViewModel(ViewState(cursor=cursor, theme=theme))
    panel = MemoryPanel(view)
    qtbot.addWidget(panel)
    panel.set_trace(trace)
    panel.resize(900, 500)
    panel.show()
    panel.render(view.state)
    return view, panel


def test_registered_and_supports_only_traces_with_memory(run, lstm_dir):
    assert MemoryPanel in PANEL_CLASSES and MemoryPanel.name == "memory"
    assert MemoryPanel.supports(run[0].trace)
    plain = Session(load_backend(str(lstm_dir)))
    plain.feed("dog")
    plain.run()
    assert not MemoryPanel.supports(plain.trace)


@pytest.mark.parametrize("theme", ["dark", "talk"])
def test_rows_are_the_trace_memories_with_their_snippets(qtbot, run, theme):
    session, store = run
    trace = session.trace
    _, panel = make(qtbot, trace, cursor=2, theme=theme)
    ids, scores = trace.array("memory_ids")[2], trace.array("memory_scores")[2]
    assert [r[0] for r in panel.rows] == list(ids[ids >= 0])
    np.testing.assert_allclose([r[1] for r in panel.rows], scores[ids >= 0])
    weights = [r[2] for r in panel.rows]
    assert weights[0] == 1.0 and all(a >= b for a, b in zip(weights, weights[1:], strict=False))
    best = panel.rows[0][3]
    assert best.position == 3 and best.token == session.backend.token_text(trace.token_ids[3])  # itself
    assert [c[0] for c in panel.columns] == ["model  p_LM", "memory  p_kNN", "mix  p"]
    np.testing.assert_array_equal(panel.columns[1][1], trace.array("knn_topk_ids")[2][:8])
    assert panel.next_id == trace.token_ids[3]
    image = panel.grab().toImage().convertToFormat(QImage.Format.Format_ARGB32)
    pixels = np.frombuffer(image.constBits(), np.uint32, count=image.width() * image.height())
    assert len(np.unique(pixels)) > 20


def test_snippets_come_from_the_trace(qtbot, run):
    session, store = run
    _, panel = make(qtbot, session.trace, cursor=1)
    assert panel.rows and panel.rows[0][3] is not None and panel.rows[0][3].document_name == "fox.txt"
    panel.set_trace(None)
    panel.render(ViewState(cursor=1))
    assert panel.rows == []


def test_text_is_shaped_unless_every_text_is_ascii(qtbot, run, gpt2_dir, tmp_path):
    """Shaping is skipped (a quarter of the paint) only when no text needs it: Qt would draw Arabic
    letters unjoined."""
    from PySide6.QtGui import QFont

    from memviz.panels.fonts import needs_shaping, unshaped

    assert not needs_shaping("The fox\u2423jumps \u23ce \u2026 \ufffd caf\u00e9 \u03b1\u03b2 \u0436")
    assert needs_shaping("\u0645\u0631\u062d\u0628\u0627")  # Arabic
    assert needs_shaping("e\u0301") and needs_shaping("\u0915\u094d\u0937") and needs_shaping("a\u200db")

    assert unshaped(QFont()).styleStrategy() & QFont.StyleStrategy.PreferNoShaping
    assert not QFont().styleStrategy() & QFont.StyleStrategy.PreferNoShaping
    session, store = run
    _, panel = make(qtbot, session.trace, cursor=2)
    assert not panel.needs_shaping

    backend = load_backend(str(gpt2_dir))
    arabic = MemoryStore.open(tmp_path / "ar.sqlite", backend=backend, create=True)
    arabic.add_document("مرحبا بالعالم. The quick brown fox.\n", "مرحبا.txt", backend)
    recall = Session(backend, memory=arabic, recall=RecallSettings(k=6, lam=0.5))
    recall.feed("The quick brown fox")
    recall.run()
    _, panel = make(qtbot, recall.trace, cursor=2)
    assert any(rec is not None and needs_shaping(rec.document_name) for *_, rec in panel.rows)  # its name
    assert panel.needs_shaping
    panel.grab()  # paints with shaped fonts
    arabic.close()


def test_the_same_snippets_after_the_store_file_is_deleted(qtbot, tmp_path, gpt2_dir):
    """The Session saves each retrieved memory's record in the trace: a saved trace draws the same
    snippets once the store is gone (the panel never opens a store)."""
    backend = load_backend(str(gpt2_dir))
    path = tmp_path / "gone.sqlite"
    store = MemoryStore.open(path, backend=backend, create=True)
    store.add_document("The quick brown fox jumps over the lazy dog.\n", "fox.txt", backend)
    session = Session(backend, memory=store, recall=RecallSettings(k=6, lam=0.5))
    session.feed("The quick brown fox jumps")
    session.run()
    trace = session.trace
    ids = trace.array("memory_ids")
    assert set(trace.memory_records) == {int(i) for i in ids.ravel() if i >= 0}  # once per retrieved id
    for i in trace.memory_records:
        assert trace.memory_record(i) == store.get([i])[0]  # what the store shows, field by field
    shown = {}
    for cursor in range(len(trace)):
        _, panel = make(qtbot, trace, cursor=cursor)
        shown[cursor] = [(i, s, r) for i, s, _, r in panel.rows]
        assert all(r is not None for *_, r in shown[cursor])
    saved = trace.save(tmp_path / "run.memviz")
    store.close()
    for file in tmp_path.iterdir():
        if file.name.startswith("gone.sqlite"):  # the database, its WAL files and its index
            file.unlink()
    assert not path.exists()
    loaded = Trace.load(saved)
    for cursor in range(len(loaded)):
        view, panel = make(qtbot, loaded, cursor=cursor)
        assert [(i, s, r) for i, s, _, r in panel.rows] == shown[cursor]
    assert panel.rows[0][3].document_name == "fox.txt" and panel.rows[0][3].token
    panel.grab()


def test_an_old_trace_without_records_shows_ids_and_scores(qtbot, tmp_path):
    """A trace saved before memory records were kept: ids and scores, each row saying so."""
    import xml.etree.ElementTree as ET

    from memviz.export import render

    trace = Trace.load(Path(__file__).parent / "data" / "format1-gpt2-memory.memviz")
    _, panel = make(qtbot, trace, cursor=3)
    ids, scores = trace.array("memory_ids")[3], trace.array("memory_scores")[3]
    assert [r[0] for r in panel.rows] == list(ids[ids >= 0]) and len(panel.rows) >= 2
    np.testing.assert_allclose([r[1] for r in panel.rows], scores[ids >= 0])
    assert all(r[3] is None for r in panel.rows)
    out = render.export_figure(trace, MemoryPanel, ViewState(cursor=3, theme="talk"), tmp_path / "m.svg")
    texts = ["".join(t.itertext()) for t in ET.parse(out).getroot().iter("{http://www.w3.org/2000/svg}text")]
    for i in ids[ids >= 0]:
        assert f"memory #{i} (its snippet was not saved in this trace)" in texts
