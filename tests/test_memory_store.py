"""The long-term memory store on real SQLite files and real tiny models (nothing mocked)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import memviz.memory.store as store_module
import memviz.memory.store_index as store_index
from memviz.backends.registry import load_backend
from memviz.core.session import RecallSettings, Session
from memviz.errors import MemvizError
from memviz.memory.store import MemoryStore, default_store_path

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shuffled_text(sample_text):
    def shuffled_text(seed: int = 0, words: int = 80) -> str:
        """Text in the tiny models' vocabulary that the untrained models cannot predict."""
        vocab = sample_text.split()
        rng = np.random.default_rng(seed)
        return " ".join(rng.choice(vocab, size=words)) + "\n"

    return shuffled_text


@pytest.fixture(scope="module")
def lstm(lstm_dir):
    return load_backend(str(lstm_dir))


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return load_backend(str(gpt2_dir))


@pytest.fixture()
def small_store(tmp_path, lstm, sample_text, shuffled_text):
    store = MemoryStore.open(tmp_path / "small.sqlite", backend=lstm, create=True)
    store.add_document(sample_text, "sample", lstm, batch_size=64)
    store.add_document(shuffled_text(1), "shuffled", lstm, batch_size=64)
    yield store
    store.close()


def all_keys(store: MemoryStore) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    conn = sqlite3.connect(store.path)
    rows = conn.execute("SELECT id, key, next_token FROM entries ORDER BY id").fetchall()
    conn.close()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    keys = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
    values = np.array([r[2] for r in rows], dtype=np.int64)
    return ids, keys, values


def run_text(backend, text, memory=None, lam=0.25, k=8, temperature=1.0):
    session = Session(backend, memory=memory, recall=RecallSettings(k=k, lam=lam, temperature=temperature))
    session.feed(text)
    session.run()
    return session


# -- retrieval ---------------------------------------------------------------------------------------
def test_exact_retrieval_matches_brute_force(small_store, lstm, sample_text, shuffled_text):
    ids, keys, values = all_keys(small_store)
    assert len(small_store) == len(ids) == len(sample_text) - 1 + len(shuffled_text(1)) - 1
    rng = np.random.default_rng(0)
    queries = np.concatenate(
        [
            keys[rng.choice(len(keys), 10)] + rng.normal(0, 0.01, (10, keys.shape[1])),
            rng.normal(0, 0.3, (10, keys.shape[1])),
        ]
    ).astype(np.float32)
    k = 12
    for q in queries:
        got_ids, got_d, got_v = small_store.search(q, k)
        d = ((keys.astype(np.float64) - q) ** 2).sum(axis=1)
        order = np.argsort(d, kind="stable")[:k]
        np.testing.assert_allclose(got_d, d[order], rtol=1e-4, atol=1e-5)
        assert np.all(np.diff(got_d) >= 0), "nearest first"
        # the same neighbours (ties may swap places, so compare as sets where distances tie)
        assert set(got_ids[np.isin(got_d, got_d[:-1])]) <= set(ids[order]) | set(ids[np.argsort(d)[: k + 4]])
        lookup = dict(zip(ids, values, strict=True))
        assert [lookup[i] for i in got_ids] == list(got_v)


def test_search_pads_with_minus_one_when_store_is_small(tmp_path, lstm):
    store = MemoryStore.open(tmp_path / "tiny.sqlite", backend=lstm, create=True)
    empty = store.search(np.zeros(store.key_dim, np.float32), 4)
    assert list(empty[0]) == [-1] * 4 and list(empty[2]) == [-1] * 4 and np.all(np.isinf(empty[1]))
    store.add_document("dog fox", "d", lstm)
    ids, dist, values = store.search(np.zeros(store.key_dim, np.float32), 10)
    assert (ids >= 0).sum() == 6 and list(ids[6:]) == [-1] * 4 and list(values[6:]) == [-1] * 4
    assert np.all(np.isinf(dist[6:]))
    with pytest.raises(MemvizError, match="key has 3 values"):
        store.search(np.zeros(3, np.float32), 2)


def test_records_highlight_the_stored_token(small_store, lstm, sample_text):
    recs = small_store.records(limit=1000)
    assert len(recs) == len(small_store)
    text = sample_text
    for r in recs[:40]:
        assert r.token == r.token_text == lstm.token_text(r.next_token)
        assert r.document_name == "sample"
        start = r.position - len(r.before)
        assert text[start : r.position + 1 + len(r.after)] == r.snippet
    got = small_store.get([recs[5].id, -1, recs[2].id, 10**9])
    assert got[0] == recs[5] and got[1] is None and got[2] == recs[2] and got[3] is None
    docs = small_store.documents()
    assert [d.name for d in docs] == ["sample", "shuffled"] and all(d.complete for d in docs)
    assert sum(d.entries for d in docs) == len(small_store)


@pytest.mark.parametrize("cache_chars", [10**9, 10])
def test_snippets_match_the_documents_in_every_document(small_store, monkeypatch, cache_chars):
    """Snippets are cut from cached document texts; SQLite's own substr on the stored text is the reference
    (with a cache too small for any document, each one is read again and dropped)."""
    import memviz.memory.store_records as store_records

    monkeypatch.setattr(store_records, "DOCUMENT_CACHE_CHARS", cache_chars)
    small_store._documents.clear()
    small_store._document_chars = 0
    conn = sqlite3.connect(small_store.path)
    expected = dict(
        conn.execute(
            "SELECT e.id, substr(d.text, max(1, e.char_start + 1 - ?), min(e.char_start, ?) + (e.char_end - e.char_start) + ?) "
            "FROM entries e JOIN documents d ON d.id = e.document_id",
            (store_module.SNIPPET_BEFORE, store_module.SNIPPET_BEFORE, store_module.SNIPPET_AFTER),
        ).fetchall()
    )
    conn.close()
    ids = np.array(sorted(expected))
    mixed = np.concatenate([ids[::7], ids[::-5]])  # both documents, back and forth
    records = small_store.get(mixed)
    assert [r.snippet for r in records] == [expected[int(i)] for i in mixed]
    assert {r.document_name for r in records} == {"sample", "shuffled"}
    assert small_store._document_chars <= cache_chars
    assert small_store._document_chars == sum(len(t) for t in small_store._documents.values())
    assert bool(small_store._documents) == (cache_chars > 10)  # a document larger than the cache is not kept


# -- recall in a session --------------------------------------------------------------------------
def test_lambda_zero_leaves_the_distribution_exactly_as_it_was(small_store, lstm, shuffled_text):
    text = shuffled_text(2, words=20)
    plain = run_text(lstm, text)
    plain_dist = plain.last_distribution.copy()
    recalled = run_text(lstm, text, memory=small_store, lam=0.0)
    assert np.array_equal(plain.trace.array("topk_ids"), recalled.trace.array("topk_ids"))
    assert np.array_equal(plain.trace.array("topk_probs"), recalled.trace.array("topk_probs"))
    assert np.array_equal(plain_dist, recalled.last_distribution)
    assert recalled.trace.has("memory_ids") and not plain.trace.has("memory_ids")
    # and the memory was really consulted: its kNN distribution is not the model's
    assert not np.array_equal(recalled.trace.array("knn_topk_probs"), recalled.trace.array("lm_topk_probs"))


# k and kNN temperature: an untrained 32-unit LSTM's keys lie within ~1e-3 of each other (squared L2),
# so at temperature 1 its k neighbours vote almost equally; the temperature must match the key scale.
@pytest.mark.parametrize(
    "model, k, temperature",
    [("lstm", 1, 1.0), ("lstm", 8, 1e-4), ("gpt2", 1, 1.0), ("gpt2", 8, 1.0)],
)
def test_memorisation_top1_at_lambda_one(tmp_path, model, k, temperature, request, shuffled_text):
    backend = request.getfixturevalue(model)
    text = shuffled_text(3, words=60)
    store = MemoryStore.open(tmp_path / "m.sqlite", backend=backend, create=True)
    store.add_document(text, "memorise me", backend)
    without = run_text(backend, text)
    with_memory = run_text(backend, text, memory=store, lam=1.0, k=k, temperature=temperature)
    nxt = np.array(with_memory.trace.token_ids[1:])
    top1 = (with_memory.trace.array("topk_ids")[:-1, 0] == nxt).mean()
    base = (without.trace.array("topk_ids")[:-1, 0] == nxt).mean()
    print(
        f"{model} k={k} T={temperature}: memorisation top-1 {top1:.3f} (model alone {base:.3f}, {len(nxt)} tokens)"
    )
    assert top1 >= 0.9
    assert base < 0.5  # untrained: the model alone cannot do it
    scores = with_memory.trace.array("memory_scores")
    assert np.all(np.diff(scores, axis=1) <= 0), "best first"
    assert np.all(scores[:-1, 0] > -1e-3)  # every read position finds itself


def test_remember_past_runs(tmp_path, lstm, shuffled_text):
    text = shuffled_text(4, words=40)
    store = MemoryStore.open(tmp_path / "runs.sqlite", backend=lstm, create=True)
    first = run_text(lstm, text, memory=store, lam=0.25)
    result = store.remember_run(first, name="yesterday")
    assert result.entries == len(first.trace) - 1 == len(store)
    again = run_text(lstm, text, memory=store, lam=1.0, k=1)
    nxt = np.array(again.trace.token_ids[1:])
    assert (again.trace.array("topk_ids")[:-1, 0] == nxt).mean() >= 0.9
    rec = store.get([again.trace.array("memory_ids")[3, 0]])[0]
    assert rec.document_name == "yesterday" and rec.token == first.trace.token_text[rec.position]


# -- persistence, crashes, damage ------------------------------------------------------------------
def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def test_persistence_across_processes(tmp_path, lstm_dir, lstm, shuffled_text):
    path = tmp_path / "p.sqlite"
    text = shuffled_text(5, words=50)
    add = _python(
        """
        import sys
        from memviz.backends.registry import load_backend
        from memviz.memory.store import MemoryStore
        b = load_backend(sys.argv[1])
        s = MemoryStore.open(sys.argv[2], backend=b, create=True)
        print(s.add_document(sys.argv[3], "doc", b).entries)
    """,
        str(lstm_dir),
        str(path),
        text,
    )
    out, err = add.communicate(timeout=120)
    assert add.returncode == 0, err
    assert int(out) == len(text) - 1
    query = _python(
        """
        import json, sys
        import numpy as np
        from memviz.backends.registry import load_backend
        from memviz.memory.store import MemoryStore
        b = load_backend(sys.argv[1])
        s = MemoryStore.open(sys.argv[2], backend=b)
        b.reset()
        for t in b.encode(sys.argv[3]).ids[:10]:
            key = b.step(t).memory_key
        ids, d, v = s.search(key, 3)
        print(json.dumps({"n": len(s), "ids": ids.tolist(), "values": v.tolist(), "d": d.tolist()}))
    """,
        str(lstm_dir),
        str(path),
        text,
    )
    out, err = query.communicate(timeout=120)
    assert query.returncode == 0, err
    got = json.loads(out)
    assert got["n"] == len(text) - 1
    assert got["values"][0] == lstm.encode(text).ids[10] and got["d"][0] < 1e-6
    store = MemoryStore.open(path, backend=lstm)
    assert store.get([got["ids"][0]])[0].position == 10


def test_kill_during_write_keeps_exactly_the_committed_batches(
    tmp_path, lstm_dir, lstm, sample_text, shuffled_text
):
    path = tmp_path / "crash.sqlite"
    batch = 128
    store = MemoryStore.open(path, backend=lstm, create=True)
    store.add_document(sample_text, "before", lstm)  # committed, with a saved index
    before = len(store)
    store.close()
    assert path.with_name(path.name + ".faiss").exists()
    long_text = shuffled_text(6, words=20_000)
    writer = _python(
        """
        import sys, time
        from memviz.backends.registry import load_backend
        from memviz.memory.store import MemoryStore
        b = load_backend(sys.argv[1])
        s = MemoryStore.open(sys.argv[2], backend=b)
        def progress(done, total):
            print(done, total, flush=True)
            time.sleep(0.02)  # pace the writer so the kill lands mid-document
        s.add_document(open(sys.argv[3]).read(), "long", b, progress=progress, batch_size=int(sys.argv[4]))
        print("finished", flush=True)
    """,
        str(lstm_dir),
        str(path),
        str(_write(tmp_path / "long.txt", long_text)),
        str(batch),
    )
    reported = 0
    for line in writer.stdout:
        reported = int(line.split()[0])
        if reported >= 10 * batch:
            break
    time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    total = len(long_text) - 1

    reopened = MemoryStore.open(path, backend=lstm)
    n_long = len(reopened) - before
    print(f"killed after {reported} reported; store holds {n_long} of {total} entries of the long document")
    assert reported <= n_long < total
    assert n_long % batch == 0, "only whole batches are committed"
    docs = reopened.documents()
    assert [(d.name, d.complete) for d in docs] == [("before", True), ("long", False)]
    assert docs[1].entries == n_long
    # the index agrees with the database: every stored key finds itself
    ids, keys, values = all_keys(reopened)
    assert reopened._index.ntotal == len(ids)
    for j in np.linspace(0, len(ids) - 1, 25).astype(int):
        got_ids, got_d, got_v = reopened.search(keys[j], 1)
        assert got_d[0] < 1e-6 and got_v[0] == values[j]
    # the positions are the document's first n_long, in order
    recs = reopened.records(document_id=docs[1].id, limit=total)
    assert [r.position for r in recs] == list(range(1, n_long + 1))
    # and the store keeps working
    reopened.add_document("dog fox", "after", lstm)
    assert len(reopened) == before + n_long + 6
    reopened.close()
    assert len(MemoryStore.open(path, backend=lstm)) == before + n_long + 6


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "stale"])
def test_damaged_or_missing_index_is_rebuilt(small_store, lstm, damage):
    path, index_path = small_store.path, small_store.index_path
    q = small_store.search(small_store.keys([7])[0], 5)
    n = len(small_store)
    small_store.close()
    if damage == "missing":
        index_path.unlink()
    elif damage == "garbage":
        index_path.write_bytes(b"this is not a faiss index" * 10)
    elif damage == "truncated":
        index_path.write_bytes(index_path.read_bytes()[:100])
    else:  # an index from another, smaller store
        other = MemoryStore.open(path.with_name("other.sqlite"), backend=lstm, create=True)
        other.add_document("dog fox dog", "o", lstm)
        other.close()
        index_path.write_bytes(other.index_path.read_bytes())
    store = MemoryStore.open(path, backend=lstm)
    assert store.index_rebuilt and len(store) == n
    got = store.search(store.keys([7])[0], 5)
    for a, b in zip(q, got, strict=True):
        np.testing.assert_array_equal(a, b)
    store.close()
    assert not MemoryStore.open(path, backend=lstm).index_rebuilt  # the rebuilt index was saved


def test_another_process_writing_is_seen_by_an_open_store(small_store, lstm):
    other = MemoryStore.open(small_store.path, backend=lstm)
    n = len(small_store)
    other.add_document("dog fox", "from elsewhere", lstm)
    ids, d, v = small_store.search(other.keys([n + 3])[0], 1)
    assert ids[0] == n + 3 and len(small_store) == n + 6


def test_approximate_index_beyond_the_exact_limit(tmp_path, lstm, monkeypatch, sample_text, shuffled_text):
    monkeypatch.setattr(store_index, "EXACT_LIMIT", 300)
    store = MemoryStore.open(tmp_path / "big.sqlite", backend=lstm, create=True)
    store.add_document(sample_text, "a", lstm, batch_size=100)
    assert store.exact
    store.add_document(shuffled_text(7, words=60), "b", lstm, batch_size=100)
    assert not store.exact and len(store) > 300
    ids, keys, values = all_keys(store)
    sample = range(0, len(ids), 7)
    hits = sum(store.search(keys[j], 1)[1][0] <= 1e-12 for j in sample)  # found itself (or its exact twin)
    print(f"HNSW: {hits} of {len(sample)} stored keys found at distance 0")
    assert hits >= 0.9 * len(sample)
    store.close()
    reopened = MemoryStore.open(tmp_path / "big.sqlite", backend=lstm)
    assert not reopened.exact and not reopened.index_rebuilt and len(reopened) == len(ids)


# -- refusals --------------------------------------------------------------------------------------
def test_another_models_store_is_refused(small_store, gpt2, tmp_path, lstm_dir_factory):
    with pytest.raises(MemvizError) as info:
        MemoryStore.open(small_store.path, backend=gpt2)
    message = str(info.value)
    assert "\n" not in message and "'tiny-lstm'" in message and "'tiny-gpt2'" in message
    other_lstm = load_backend(str(lstm_dir_factory(tmp_path / "other-lstm", seed=1)))
    with pytest.raises(MemvizError, match="belongs to model 'tiny-lstm'.*not to 'other-lstm'"):
        MemoryStore.open(small_store.path, backend=other_lstm)
    with pytest.raises(MemvizError, match="belongs to model"):
        small_store.add_document("dog", "x", other_lstm)


def test_bad_paths(tmp_path, lstm):
    with pytest.raises(MemvizError, match="no memory store there"):
        MemoryStore.open(tmp_path / "none.sqlite", backend=lstm)
    with pytest.raises(MemvizError, match="is a folder"):
        MemoryStore.open(tmp_path, backend=lstm)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(MemvizError, match="not a memviz memory store"):
        MemoryStore.open(junk, backend=lstm)
    with pytest.raises(MemvizError, match="too short"):
        MemoryStore.open(tmp_path / "s.sqlite", backend=lstm, create=True).add_document("d", "x", lstm)


def test_default_location(monkeypatch, tmp_path, lstm):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    path = default_store_path("python docs/gpt2")
    assert path.name == "python_docs_gpt2.sqlite" and path.parent.name == "memory"
    assert "memviz" in path.parts
    if sys.platform.startswith("linux"):
        store = MemoryStore.open(None, backend=lstm, create=True)
        assert store.path == tmp_path / "data" / "memviz" / "memory" / "tiny-lstm.sqlite"
