"""A store that grows during a run (documents added in the app): the trace, and its figure, say how many
memories the run recalled from, not the count when the store was attached (issue 13 item 7)."""

from __future__ import annotations

from memviz.backends.registry import load_backend
from memviz.core.session import RecallSettings, Session
from memviz.memory.store import MemoryStore


def test_the_manifest_counts_the_documents_added_during_the_run(tmp_path, lstm_dir):
    backend = load_backend(str(lstm_dir))
    store = MemoryStore.open(tmp_path / "m.sqlite", backend=backend, create=True)
    session = Session(backend, memory=store, recall=RecallSettings(k=4, lam=0.25))
    assert session.trace.memory["entries"] == 0  # attached empty, as in View -> Memory settings
    store.add_document("The quick brown fox jumps over the lazy dog.\n", "fox.txt", backend)
    session.feed("The quick brown")
    session.run()
    assert session.trace.memory["entries"] == len(store) > 0
    saved = session.trace.save(tmp_path / "run.memviz")
    from memviz.core.trace import Trace

    assert Trace.load(saved).memory["entries"] == len(store)
