"""The memory store's key index: a faiss index of the entries' keys, saved beside the database
(`<store>.faiss`) and only a cache of it: missing, damaged or behind, it is rebuilt or caught up
from SQLite. Exact search (IndexFlatL2) up to EXACT_LIMIT entries, HNSW beyond.

Split out of store.py (issue 14): KeyIndex is a part of MemoryStore (it uses the store's
connection, lock, key_dim and notices), kept here so the index has one module.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

EXACT_LIMIT = 100_000  # beyond this many entries the index is approximate (HNSW)
HNSW_M = 32
HNSW_EF_SEARCH = 128
HNSW_EF_CONSTRUCTION = 80
INDEX_SAVE_EVERY_S = 2.0  # while adding, save the index this often (or 10x its last save's time)
CATCH_UP_CHUNK = 8192

# The rows the index can hold: a key of the store's width, an integer value. Others are left out.
_VALID = "typeof(key) = 'blob' AND length(key) = :bytes AND typeof(next_token) = 'integer'"


def _faiss():
    """faiss, with one OpenMP thread: a search is one query, and on a busy machine OpenMP's
    spinning threads made a 10k-entry search ten times slower (60 ms instead of 6)."""
    import faiss

    global _FAISS_READY
    if not _FAISS_READY:
        faiss.omp_set_num_threads(int(os.environ.get("MEMVIZ_FAISS_THREADS", "1")))
        _FAISS_READY = True
    return faiss


_FAISS_READY = False


class KeyIndex:
    """The index half of MemoryStore: building, loading, catching up, saving, appending."""

    path: Path
    index_path: Path
    key_dim: int
    _conn: sqlite3.Connection
    _lock: threading.RLock
    _progress: Callable[[int, int], None] | None
    _valid: dict[str, int]
    _say: Callable[[str], None]

    def _new_index(self, n: int):
        faiss = _faiss()

        if n > EXACT_LIMIT:
            inner = faiss.IndexHNSWFlat(self.key_dim, HNSW_M)
            inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            inner.hnsw.efSearch = HNSW_EF_SEARCH
        else:
            inner = faiss.IndexFlatL2(self.key_dim)
        return faiss.IndexIDMap2(inner)

    @staticmethod
    def _is_exact(index) -> bool:
        faiss = _faiss()

        return isinstance(faiss.downcast_index(index.index), faiss.IndexFlatL2)

    def _index_ids(self, index) -> np.ndarray:
        faiss = _faiss()

        return faiss.vector_to_array(index.id_map).astype(np.int64)

    def _load_saved_index(self):
        faiss = _faiss()

        if not self.index_path.exists():
            return None
        try:
            index = faiss.read_index(str(self.index_path))  # already its own class (never downcast it:
            # the downcast proxy does not own the index, which is freed with the original proxy)
            if not isinstance(index, faiss.IndexIDMap2) or index.d != self.key_dim:
                return None
            if not self._is_exact(index):
                faiss.downcast_index(index.index).hnsw.efSearch = HNSW_EF_SEARCH
            return index
        except (RuntimeError, OSError, ValueError):
            return None  # damaged: rebuilt from the database

    def _sync_index(self, initial: bool = False) -> None:
        """Bring the in-memory index up to the database (after another process wrote, or on open)."""
        with self._lock:
            (count,) = self._conn.execute(
                f"SELECT COUNT(*) FROM entries WHERE {_VALID}", self._valid
            ).fetchone()
            if initial:
                (rows,) = self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()
                self.skipped_entries = int(rows - count)
            index = self._index if not initial else self._load_saved_index()
            top = self._index_top
            if index is not None:
                ids = self._index_ids(index)
                top = int(ids.max()) if ids.size else 0
                (below,) = self._conn.execute(
                    f"SELECT COUNT(*) FROM entries WHERE id <= :top AND {_VALID}", {**self._valid, "top": top}
                ).fetchone()
                wrong_kind = self._is_exact(index) == (count > EXACT_LIMIT)
                if below != index.ntotal or wrong_kind or not self._keys_agree(index, ids):
                    index = None  # not a prefix of the database (or the wrong kind): rebuild
            if index is None:
                index, top = self._new_index(count), 0
                self.index_rebuilt = initial and count > 0
            behind = count - index.ntotal
            if initial and behind and not self.index_rebuilt:
                self._say(f"{self.path}: the key index is {behind} entries behind the database; catching up")
            self._index = index
            self._index_top = top
            added = self._add_from_db(index, after=top, report=initial)
            self._load_values()
            self._data_version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if initial and (added or self.index_rebuilt):
                self.save_index()

    def _keys_agree(self, index, ids: np.ndarray, samples: int = 16) -> bool:
        """Do the index's vectors match the database's keys? (first, last and a spread of ids)"""
        if not ids.size:
            return True
        picks = np.unique(ids[np.linspace(0, ids.size - 1, min(samples, ids.size)).astype(np.int64)])
        marks = ",".join("?" * len(picks))
        rows = dict(
            self._conn.execute(
                f"SELECT id, key FROM entries WHERE id IN ({marks})", [int(i) for i in picks]
            ).fetchall()
        )
        try:
            for i in picks:
                stored = rows.get(int(i))
                if stored is None or not np.array_equal(
                    index.reconstruct(int(i)), np.frombuffer(stored, dtype=np.float32)
                ):
                    return False
        except RuntimeError:
            return False
        return True

    def _add_from_db(self, index, after: int, report: bool = False) -> int:
        """Add the database's valid entries with id > after to `index` (progress(done, total) when
        `report`: catching up on open can take a while for a large store)."""
        total = 0
        if report and self._progress is not None:
            (total,) = self._conn.execute(
                f"SELECT COUNT(*) FROM entries WHERE id > :after AND {_VALID}",
                {**self._valid, "after": after},
            ).fetchone()
        added = 0
        cursor = self._conn.execute(
            f"SELECT id, key, next_token FROM entries WHERE id > :after AND {_VALID} ORDER BY id",
            {**self._valid, "after": after},
        )
        while rows := cursor.fetchmany(CATCH_UP_CHUNK):
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            keys = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(
                len(rows), self.key_dim
            )
            index.add_with_ids(keys, ids)
            added += len(rows)
            if index is self._index:
                self._index_top = max(self._index_top, int(ids[-1]))
                self._set_values(ids, np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows)))
            if total:
                self._progress(added, total)
        return added

    def _load_values(self) -> None:
        rows = self._conn.execute(
            f"SELECT id, next_token FROM entries WHERE {_VALID}", self._valid
        ).fetchall()
        arr = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        values = np.full(int(arr[:, 0].max()) + 1 if len(arr) else 1, -1, dtype=np.int64)
        values[arr[:, 0]] = arr[:, 1]
        self._values = values

    def save_index(self) -> None:
        """Write the index beside the database (atomically: a kill leaves the old file or the new)."""
        faiss = _faiss()

        with self._lock:
            started = time.monotonic()
            tmp = self.index_path.with_name(self.index_path.name + f".tmp{os.getpid()}")
            try:
                faiss.write_index(self._index, str(tmp))
                os.replace(tmp, self.index_path)
            except (RuntimeError, OSError):
                tmp.unlink(missing_ok=True)  # a read-only folder: the index is rebuilt next time
            self._last_save = time.monotonic()
            self._save_seconds = self._last_save - started

    def _save_index_now_and_then(self) -> None:
        """While adding: save the index every INDEX_SAVE_EVERY_S (or 10x the time a save takes, so
        saving costs a tenth of the add at most). A killed add then leaves little to catch up."""
        if time.monotonic() - self._last_save >= max(INDEX_SAVE_EVERY_S, 10 * self._save_seconds):
            self.save_index()

    def _append_to_index(self, ids: np.ndarray, keys: np.ndarray, values: np.ndarray) -> None:
        """After a committed batch: add it to the index (switching to HNSW past EXACT_LIMIT). When
        another process committed entries since the index was last brought up to date, they are
        read from the database with this batch, so the index stays a prefix of the database."""
        n = self._index.ntotal + len(ids)
        if self._is_exact(self._index) and n > EXACT_LIMIT:
            self._index = self._new_index(n)
            self._index_top = 0
            self._add_from_db(self._index, after=0)
            self._load_values()
        elif int(ids[0]) != self._index_top + 1:
            self._add_from_db(self._index, after=self._index_top)  # this batch and the others'
        else:
            self._index.add_with_ids(keys, ids)
            self._index_top = int(ids[-1])
            self._set_values(ids, values)
        self._data_version = self._conn.execute("PRAGMA data_version").fetchone()[0]

    def _set_values(self, ids: np.ndarray, values: np.ndarray) -> None:
        top = int(ids.max())
        if top >= self._values.size:
            grown = np.full(max(top + 1, 2 * self._values.size), -1, dtype=np.int64)
            grown[: self._values.size] = self._values
            self._values = grown
        self._values[ids] = values
