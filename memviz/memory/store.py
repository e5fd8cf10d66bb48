"""The long-term memory store: kNN-LM (key, value) pairs that persist across runs.

Records live in SQLite (WAL mode, one transaction per batch, so a kill loses at most the batch in
flight); keys are searched with a faiss index saved beside the database (`<store>.faiss`). The index
is only a cache: when it is missing, damaged or behind the database it is rebuilt (or caught up)
from SQLite. Exact search (IndexFlatL2) up to EXACT_LIMIT entries, HNSW beyond.

Key of an entry: the model's memory key after reading token p of a document; value: token p + 1.
Documents keep their text (the concatenated token texts), and each entry the character span of its
value token in it, so a snippet with the stored token highlighted is cut on display.

The store knows keys, not models: a backend is duck-typed (info, fingerprint(), memory_key_dim,
memory_key_point, encode, token_text, document_keys) and computes every key itself.

Its parts (issue 14: one job a module): store_db.py (the SQLite file: schema, opening, the lock),
store_index.py (the key index), store_records.py (records and snippets). Their public names are
importable from here too.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from memviz.errors import MemvizError, warn
from memviz.memory import store_db
from memviz.memory.store_db import (  # noqa: F401  (re-exported: the store's names before the split)
    LOCK_NOTICE_S,
    LOCK_WAIT_S,
    STORE_VERSION,
    conn_path,
    default_store_path,
    store_error,
)
from memviz.memory.store_db import translated as _translated
from memviz.memory.store_db import waiting as _waiting
from memviz.memory.store_index import (  # noqa: F401
    CATCH_UP_CHUNK,
    EXACT_LIMIT,
    HNSW_EF_CONSTRUCTION,
    HNSW_EF_SEARCH,
    HNSW_M,
    INDEX_SAVE_EVERY_S,
    KeyIndex,
)
from memviz.memory.store_records import (  # noqa: F401
    DOCUMENT_CACHE_CHARS,
    SNIPPET_AFTER,
    SNIPPET_BEFORE,
    AddResult,
    DocumentInfo,
    MemoryRecord,
    RecordReader,
)

BATCH_SIZE = 512


class MemoryStore(KeyIndex, RecordReader):
    """A persistent kNN memory for one model. Thread-safe: one lock guards the database and index.

    Database errors after opening are MemvizErrors in one line (`store_error`): busy, corrupt.
    """

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        notice: Callable[[str], None] | None = warn,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.path = path
        self._notice = notice
        self._progress = progress  # catching the index up on open: progress(done, total)
        self.index_path = path.with_name(path.name + ".faiss")
        self._conn = conn
        self._lock = threading.RLock()
        self._documents: OrderedDict[int, str] = OrderedDict()  # id -> text, see _document_text
        self._document_chars = 0
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        self.fingerprint: str = meta["fingerprint"]
        self.model_name: str = meta.get("model_name", "?")
        self.architecture: str = meta.get("architecture", "?")
        self.key_dim: int = int(meta["key_dim"])
        self._valid = {"bytes": 4 * self.key_dim}
        self._index = None
        self._index_top = 0  # the highest entry id in the index
        self._last_save = time.monotonic()
        self._save_seconds = 0.0
        self.skipped_entries = 0  # rows with a damaged key or value, left out of the index
        self._values = np.full(0, -1, dtype=np.int64)  # next token by entry id
        self._data_version = -1
        self.index_rebuilt = False  # True when open() had to rebuild the index from the database
        self._sync_index(initial=True)
        if self.skipped_entries:
            self._say(
                f"{path}: {self.skipped_entries} entries have a damaged key or value and are left out; "
                "the rest of the store is usable"
            )

    def _say(self, message: str) -> None:
        if self._notice is not None:
            self._notice(message)

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike | None,
        backend=None,
        create: bool = False,
        notice: Callable[[str], None] | None = warn,
        progress: Callable[[int, int], None] | None = None,
    ) -> MemoryStore:
        """Open the store at `path` (None: the default one for backend's model).

        With a backend, a store built for another model is refused. With create=True a missing
        store is created for the backend's model (atomically: two processes creating the same store
        at once both get it). `notice(message)` hears of waits for a lock and of damaged rows (by
        default a warning on stderr); `progress(done, total)` follows an index catching up.
        """
        path = store_db.store_path(path, backend, create)
        deadline = time.monotonic() + store_db.LOCK_WAIT_S
        while True:
            conn = None
            try:
                conn = store_db.connect(path)
                store_db.prepare(conn, path, backend, create, notice)
                return cls(path, conn, notice=notice, progress=progress)
            except MemvizError:
                if conn is not None:
                    conn.close()
                raise
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                # A read while another process makes the file a WAL store can be answered "locked"
                # at once: opening is safe to repeat (prepare looks again before it creates).
                if store_db.is_locked(exc) and time.monotonic() < deadline:
                    time.sleep(store_db.RETRY_S)
                    continue
                raise store_error(path, exc) from None
            except OSError as exc:
                if conn is not None:
                    conn.close()
                raise MemvizError(f"{path}: cannot open ({exc.strerror})") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._index.ntotal)

    @_translated
    def refresh(self) -> int:
        """Catch up with what other processes wrote; the store's entries (len) after it."""
        with self._lock:
            if self._conn.execute("PRAGMA data_version").fetchone()[0] != self._data_version:
                self._sync_index()
            return len(self)

    @property
    def entries(self) -> int:
        return len(self)

    @property
    def exact(self) -> bool:
        return self._is_exact(self._index)

    def manifest(self) -> dict:
        return {"store": str(self.path), "entries": len(self), "model": self.model_name}

    @_translated
    def search(self, key: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The k nearest memories: ids (-1 = none), squared-L2 distances, next tokens; nearest first."""
        ids, distances, values = self.search_many(np.asarray(key, dtype=np.float32).reshape(1, -1), k)
        return ids[0], distances[0], values[0]

    def search_many(self, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`search` for every row of keys [n, key_dim] in one index call: ids, distances and next
        tokens [n, k] (the experiments score whole texts; one call costs about as much as one key)."""
        query = np.ascontiguousarray(np.asarray(keys, dtype=np.float32))
        if query.ndim != 2 or query.shape[1] != self.key_dim:
            width = query.shape[-1] if query.ndim else 1
            raise MemvizError(f"memory key has {width} values; this store holds keys of {self.key_dim}")
        with self._lock:
            if self._conn.execute("PRAGMA data_version").fetchone()[0] != self._data_version:
                self._sync_index()  # another process (or connection) wrote
            k_eff = max(1, min(int(k), max(1, self._index.ntotal)))
            distances, ids = self._index.search(query, k_eff)
            values_by_id = self._values
        ids = ids.astype(np.int64)
        distances = distances.astype(np.float32)
        if k_eff < k:
            n = len(query)
            ids = np.concatenate([ids, np.full((n, k - k_eff), -1, dtype=np.int64)], axis=1)
            distances = np.concatenate([distances, np.full((n, k - k_eff), np.inf, dtype=np.float32)], axis=1)
        ok = (ids >= 0) & (ids < values_by_id.size)
        ids = np.where(ok, ids, -1)
        distances = np.where(ok, distances, np.float32(np.inf)).astype(np.float32)
        values = np.where(ok, values_by_id[np.where(ok, ids, 0)], -1).astype(np.int64)
        return ids, distances, values

    def info(self) -> dict:
        docs = self.documents()
        return {
            "store": str(self.path),
            "entries": len(self),
            "documents": len(docs),
            "model": self.model_name,
            "architecture": self.architecture,
            "fingerprint": self.fingerprint,
            "key_dim": self.key_dim,
            "index": "exact (flat L2)" if self.exact else f"approximate (HNSW, M={HNSW_M})",
        }

    # -- writing --------------------------------------------------------------------------------
    def _check_backend(self, backend) -> None:
        if backend.fingerprint() != self.fingerprint:
            raise MemvizError(
                f"{self.path}: this memory store belongs to model '{self.model_name}' "
                f"(fingerprint {self.fingerprint}), not to '{backend.info.name}' (fingerprint {backend.fingerprint()})"
            )

    @_translated
    def add_document(
        self,
        text: str,
        name: str,
        backend,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> AddResult:
        """Read `text` with the model and store one entry per token (key after token p -> token p+1).

        One transaction per batch of `batch_size` entries; progress(done, total) after each batch;
        cancelled() is checked between batches (what was committed stays).
        """
        self._check_backend(backend)
        ids = [*backend.info.start_ids, *backend.encode(text).ids]  # each document is a run of its own
        if len(ids) < 2:
            raise MemvizError(f"{name}: too short to remember (it needs at least two tokens)")
        keys = backend.document_keys(ids)
        texts = [backend.token_text(i) for i in ids]
        return self._write(ids, texts, keys, name, "file", progress, cancelled, batch_size)

    @_translated
    def remember_run(
        self, session, name: str | None = None, batch_size: int = BATCH_SIZE
    ) -> AddResult | None:
        """Store a finished run's keys (the opt-in "remember past runs"). None when too short."""
        self._check_backend(session.backend)
        trace = session.trace
        n = min(len(trace), len(session.keys))
        if n < 2:
            return None
        ids = trace.token_ids[:n]
        texts = trace.token_text[:n]
        keys = iter(session.keys[: n - 1])
        name = name or time.strftime("run %Y-%m-%d %H:%M:%S")
        return self._write(ids, texts, keys, name, "run", None, None, batch_size)

    def _write(
        self, ids, texts, keys: Iterator[np.ndarray], name, source, progress, cancelled, batch_size
    ) -> AddResult:
        start_time = time.perf_counter()
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum([len(t) for t in texts], out=offsets[1:])
        total = len(ids) - 1
        with self._lock:
            cur = self._locked_write(
                lambda: self._conn.execute(
                    "INSERT INTO documents (name, source, text, tokens, added, complete) VALUES (?, ?, ?, ?, ?, 0)",
                    (name, source, "".join(texts), len(ids), time.time()),
                )
            )
            document_id = int(cur.lastrowid)
        done = 0
        was_cancelled = False
        batch: list[np.ndarray] = []
        for p, key in enumerate(keys):
            batch.append(np.asarray(key, dtype=np.float32).reshape(-1))
            if len(batch) == batch_size or p == total - 1:
                self._commit_batch(document_id, done, batch, ids, texts, offsets)
                done += len(batch)
                batch = []
                self._save_index_now_and_then()
                if progress:
                    progress(done, total)
                if cancelled and cancelled() and done < total:
                    was_cancelled = True
                    break
        with self._lock:
            self._locked_write(
                lambda: self._conn.execute(
                    "UPDATE documents SET complete = ? WHERE id = ?", (int(not was_cancelled), document_id)
                )
            )
            self._data_version = self._locked_write(
                lambda: self._conn.execute("PRAGMA data_version").fetchone()[0]
            )
            self.save_index()
            entries = self._locked_write(lambda: MemoryStore.refresh.__wrapped__(self))  # untranslated
        return AddResult(document_id, done, time.perf_counter() - start_time, was_cancelled, entries)

    def _locked_write(self, work: Callable):
        return _waiting(self._conn, self.path, self._notice, work)

    def _commit_batch(self, document_id, first, batch, ids, texts, offsets) -> None:
        keys = np.stack(batch)
        if keys.shape[1] != self.key_dim:
            raise MemvizError(
                f"model keys have {keys.shape[1]} values; this store holds keys of {self.key_dim}"
            )
        rows = []
        for j in range(len(batch)):
            p = first + j + 1  # the value's position
            rows.append(
                (
                    keys[j].tobytes(),
                    int(ids[p]),
                    texts[p],
                    document_id,
                    p,
                    int(offsets[p]),
                    int(offsets[p + 1]),
                )
            )
        with self._lock:
            self._locked_write(lambda: self._conn.execute("BEGIN IMMEDIATE"))
            try:
                cur = self._conn.executemany(
                    "INSERT INTO entries (key, next_token, token_text, document_id, position, char_start, char_end) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                (last,) = self._conn.execute("SELECT MAX(id) FROM entries").fetchone()
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            del cur
            new_ids = np.arange(last - len(rows) + 1, last + 1, dtype=np.int64)
            values = np.asarray([r[1] for r in rows], dtype=np.int64)
            self._append_to_index(new_ids, keys, values)
