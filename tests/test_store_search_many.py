"""MemoryStore.search_many: every row's answer is the one-key search's, for an exact store."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from memviz.backends.registry import load_backend
from memviz.errors import MemvizError
from memviz.memory.store import MemoryStore
from tests.conftest import SAMPLE_TEXT


def test_search_many_equals_one_search_per_key(tmp_path, lstm_dir):
    lstm = load_backend(str(lstm_dir))
    store = MemoryStore.open(tmp_path / "m.sqlite", backend=lstm, create=True)
    store.add_document(SAMPLE_TEXT, "doc", lstm)
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(7, store.key_dim)).astype(np.float32)
    for k in (1, 5, len(store) + 3):  # more than the store holds: padded with -1 / inf
        ids, distances, values = store.search_many(keys, k)
        assert ids.shape == distances.shape == values.shape == (7, k)
        for row, key in enumerate(keys):
            one = store.search(key, k)
            np.testing.assert_array_equal(ids[row], one[0])
            np.testing.assert_array_equal(values[row], one[2])
            np.testing.assert_allclose(distances[row], one[1], rtol=1e-5)
    # brute force: the nearest of each key by hand over the stored keys
    conn = sqlite3.connect(store.path)
    rows = conn.execute("SELECT id, key FROM entries ORDER BY id").fetchall()
    conn.close()
    entry_ids = np.array([r[0] for r in rows])
    stored = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
    hand = entry_ids[((keys[:, None, :] - stored[None]) ** 2).sum(-1).argmin(1)]
    got, _, _ = store.search_many(keys, 1)
    np.testing.assert_array_equal(got[:, 0], hand)
    with pytest.raises(MemvizError, match="holds keys of"):
        store.search_many(keys[:, :3], 2)
    store.close()
