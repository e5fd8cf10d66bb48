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
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memviz.errors import MemvizError, warn

STORE_VERSION = 1
EXACT_LIMIT = 100_000  # beyond this many entries the index is approximate (HNSW)
HNSW_M = 32
HNSW_EF_SEARCH = 128
HNSW_EF_CONSTRUCTION = 80
BATCH_SIZE = 512
SNIPPET_BEFORE = 80  # characters of context shown before the stored token
SNIPPET_AFTER = 40
DOCUMENT_CACHE_CHARS = 16_000_000  # document texts kept in memory for snippets (16 to 64 MB at most)
LOCK_NOTICE_S = 1.0  # after this long waiting for another process's lock, say so ...
LOCK_WAIT_S = 10.0  # ... and after this long in all, give up: "busy"
INDEX_SAVE_EVERY_S = 2.0  # while adding, save the index this often (or 10x its last save's time)
CATCH_UP_CHUNK = 8192

# The rows the index can hold: a key of the store's width, an integer value. Others are left out.
_VALID = "typeof(key) = 'blob' AND length(key) = :bytes AND typeof(next_token) = 'integer'"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT NOT NULL,          -- 'file' or 'run'
    text TEXT NOT NULL,            -- the concatenated token texts (entries' spans index into it)
    tokens INTEGER NOT NULL,
    added REAL NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL,             -- float32[key_dim]
    next_token INTEGER NOT NULL,   -- the value: the token that came next
    token_text TEXT NOT NULL,      -- its text
    document_id INTEGER NOT NULL REFERENCES documents(id),
    position INTEGER NOT NULL,     -- token index of the value in its document
    char_start INTEGER NOT NULL,   -- span of the value token in documents.text
    char_end INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_document ON entries(document_id, position);
"""


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


def default_store_path(model_name: str) -> Path:
    """<user data dir>/memviz/memory/<model-name>.sqlite"""
    from platformdirs import user_data_dir

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name) or "model"
    return Path(user_data_dir("memviz")) / "memory" / f"{safe}.sqlite"


@dataclass(frozen=True)
class MemoryRecord:
    """One memory, for display."""

    id: int
    next_token: int
    token_text: str
    document_id: int
    document_name: str
    position: int
    snippet: str  # source text around the stored token
    highlight: tuple[int, int]  # the stored token's span in snippet

    @property
    def before(self) -> str:
        return self.snippet[: self.highlight[0]]

    @property
    def token(self) -> str:
        return self.snippet[self.highlight[0] : self.highlight[1]]

    @property
    def after(self) -> str:
        return self.snippet[self.highlight[1] :]


@dataclass(frozen=True)
class DocumentInfo:
    id: int
    name: str
    source: str
    tokens: int
    entries: int
    complete: bool


@dataclass(frozen=True)
class AddResult:
    document_id: int
    entries: int  # entries this add stored
    seconds: float
    cancelled: bool
    store_entries: int = 0  # the store's entries after it (other processes' adds included)

    @property
    def rate(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else float("inf")


def _translated(method):
    """A database error inside a store method becomes a one-line MemvizError (busy, corrupt)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None

    return wrapper


def _locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def store_error(path: Path, exc: sqlite3.Error) -> MemvizError:
    """What a database error means for the user, in one line."""
    text = str(exc)
    if _locked(exc):
        return MemvizError(
            f"{path}: busy: another process holds the store's lock (try again when it is done)"
        )
    if "malformed" in text or "corrupt" in text.lower():
        return MemvizError(f"{path}: is corrupt ({text}); add its documents again to a new store")
    return MemvizError(f"{path}: not a memviz memory store ({text})")


def _waiting(conn: sqlite3.Connection, path: Path, notice: Callable[[str], None] | None, work: Callable):
    """Run `work()` (one statement or transaction); while another process holds the lock, wait
    LOCK_WAIT_S at most, saying so after LOCK_NOTICE_S instead of waiting in silence."""
    conn.execute(f"PRAGMA busy_timeout = {int(LOCK_NOTICE_S * 1000)}")
    try:
        return work()
    except sqlite3.OperationalError as exc:
        if not _locked(exc):
            raise
    if notice is not None:
        notice(f"{path}: waiting for another process that holds the store's lock")
    conn.execute(f"PRAGMA busy_timeout = {int((LOCK_WAIT_S - LOCK_NOTICE_S) * 1000)}")
    try:
        return work()
    except sqlite3.OperationalError as exc:
        if _locked(exc):
            raise MemvizError(
                f"{path}: busy: another process holds the store's lock "
                f"(waited {LOCK_WAIT_S:g} s; try again when it is done)"
            ) from None
        raise
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(LOCK_WAIT_S * 1000)}")


class MemoryStore:
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
        if path is None:
            if backend is None:
                raise MemvizError("give a memory store (--store) or a model")
            path = default_store_path(backend.info.name)
        path = Path(path).expanduser()
        if path.is_dir():
            raise MemvizError(f"{path}: is a folder; a memory store is a file such as memory.sqlite")
        exists = path.exists() and path.stat().st_size > 0
        if not exists:
            if not create:
                raise MemvizError(f"{path}: no memory store there (make one with `memviz memory add`)")
            if backend is None:
                raise MemvizError(f"{path}: a new memory store needs a model")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MemvizError(f"{path}: cannot create folder {path.parent} ({exc.strerror})") from None
        conn = None
        try:
            conn = sqlite3.connect(
                str(path), check_same_thread=False, isolation_level=None, timeout=LOCK_WAIT_S
            )
            _waiting(conn, path, notice, lambda: conn.execute("PRAGMA journal_mode=WAL"))
            conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: commits survive a killed process
            if not cls._has_tables(conn):
                if not create:
                    raise MemvizError(f"{path}: not a memviz memory store")
                _waiting(conn, path, notice, lambda: cls._initialise(conn, backend))
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if "fingerprint" not in meta or "key_dim" not in meta:
                raise MemvizError(f"{path}: not a memviz memory store (no model recorded)")
            if int(meta.get("version", 0)) > STORE_VERSION:
                raise MemvizError(f"{path}: made by a newer memviz (store version {meta['version']})")
            if backend is not None and meta["fingerprint"] != backend.fingerprint():
                raise MemvizError(
                    f"{path}: this memory store belongs to model '{meta.get('model_name', '?')}' "
                    f"(fingerprint {meta['fingerprint']}), not to '{backend.info.name}' "
                    f"(fingerprint {backend.fingerprint()})"
                )
            return cls(path, conn, notice=notice, progress=progress)
        except MemvizError:
            if conn is not None:
                conn.close()
            raise
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise store_error(path, exc) from None
        except OSError as exc:
            if conn is not None:
                conn.close()
            raise MemvizError(f"{path}: cannot open ({exc.strerror})") from None

    @staticmethod
    def _has_tables(conn: sqlite3.Connection) -> bool:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return {"meta", "documents", "entries"} <= tables

    @classmethod
    def _initialise(cls, conn: sqlite3.Connection, backend) -> None:
        """Create the schema under the write lock, after looking again: another process may have
        created the store since this one looked (the race two `memory add` on a new store ran)."""
        key_dim = int(backend.memory_key_dim)  # declared by the backend: creating a store runs no model
        conn.execute("BEGIN IMMEDIATE")
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if cls._has_tables(conn) and conn.execute("SELECT COUNT(*) FROM meta").fetchone()[0]:
                conn.execute("COMMIT")  # created by another process meanwhile
                return
            if tables - {"meta", "documents", "entries"}:  # another program's database: leave it alone
                raise MemvizError(f"{conn_path(conn)}: not a memviz memory store")
            cls._create(conn, backend, key_dim)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @staticmethod
    def _create(conn: sqlite3.Connection, backend, key_dim: int) -> None:
        for statement in _SCHEMA.split(";"):
            statement = "\n".join(line.split("--")[0] for line in statement.splitlines()).strip()
            if statement:
                conn.execute(statement)
        meta = {
            "version": str(STORE_VERSION),
            "fingerprint": backend.fingerprint(),
            "model_name": backend.info.name,
            "model_source": backend.info.source,
            "architecture": backend.info.architecture,
            "key_dim": str(key_dim),
            "key_point": backend.memory_key_point,  # which internal the keys are (informative)
            "created": str(time.time()),
        }
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the index ------------------------------------------------------------------------------
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
        query = np.ascontiguousarray(np.asarray(key, dtype=np.float32).reshape(1, -1))
        if query.shape[1] != self.key_dim:
            raise MemvizError(
                f"memory key has {query.shape[1]} values; this store holds keys of {self.key_dim}"
            )
        with self._lock:
            if self._conn.execute("PRAGMA data_version").fetchone()[0] != self._data_version:
                self._sync_index()  # another process (or connection) wrote
            k_eff = max(1, min(int(k), max(1, self._index.ntotal)))
            distances, ids = self._index.search(query, k_eff)
            values_by_id = self._values
        ids = ids[0].astype(np.int64)
        distances = distances[0].astype(np.float32)
        if k_eff < k:
            ids = np.concatenate([ids, np.full(k - k_eff, -1, dtype=np.int64)])
            distances = np.concatenate([distances, np.full(k - k_eff, np.inf, dtype=np.float32)])
        ok = (ids >= 0) & (ids < values_by_id.size)
        ids = np.where(ok, ids, -1)
        distances = np.where(ok, distances, np.float32(np.inf)).astype(np.float32)
        values = np.where(ok, values_by_id[np.where(ok, ids, 0)], -1).astype(np.int64)
        return ids, distances, values

    @_translated
    def get(self, ids) -> list[MemoryRecord | None]:
        """Records for display, in the order asked (None for an id with no record, such as -1)."""
        wanted = [int(i) for i in np.asarray(ids).reshape(-1)]
        real = sorted({i for i in wanted if i >= 0})
        found: dict[int, MemoryRecord] = {}
        texts: dict[int, str] = {}  # this call's documents (one larger than the cache is read once)
        with self._lock:
            for start in range(0, len(real), 500):
                chunk = real[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    "SELECT e.id, e.next_token, e.token_text, e.document_id, d.name, e.position, e.char_start, "
                    f"e.char_end FROM entries e JOIN documents d ON d.id = e.document_id WHERE e.id IN ({marks})",
                    chunk,
                ).fetchall()
                for row in rows:
                    if row[3] not in texts:
                        texts[row[3]] = self._document_text(row[3])
                    found[row[0]] = _record(row, texts[row[3]])
        return [found.get(i) for i in wanted]

    def _document_text(self, document_id: int) -> str:
        """A document's text, kept in memory (most recently used first, DOCUMENT_CACHE_CHARS in all).

        Cutting each snippet out in SQL read the whole document for every record: 8 ms per step for
        16 memories from a 0.9 M-character document. A document's text never changes once added.
        """
        text = self._documents.get(document_id)
        if text is not None:
            self._documents.move_to_end(document_id)
            return text
        row = self._conn.execute("SELECT text FROM documents WHERE id = ?", (document_id,)).fetchone()
        text = row[0] if row is not None else ""
        if len(text) > DOCUMENT_CACHE_CHARS:
            return text  # larger than the whole cache: read again at each call, never kept
        self._documents[document_id] = text
        self._document_chars += len(text)
        while self._document_chars > DOCUMENT_CACHE_CHARS:
            _, dropped = self._documents.popitem(last=False)
            self._document_chars -= len(dropped)
        return text

    @_translated
    def records(
        self, document_id: int | None = None, offset: int = 0, limit: int = 100
    ) -> list[MemoryRecord]:
        """A page of records in storage order (optionally of one document)."""
        with self._lock:
            if document_id is None:
                rows = self._conn.execute(
                    "SELECT id FROM entries ORDER BY id LIMIT ? OFFSET ?", (limit, offset)
                ).fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT id FROM entries WHERE document_id = ? ORDER BY position LIMIT ? OFFSET ?",
                    (document_id, limit, offset),
                ).fetchall()
        return [r for r in self.get([row[0] for row in rows]) if r is not None]

    @_translated
    def keys(self, ids) -> np.ndarray:
        """Stored keys [n, key_dim] for the given ids (all present)."""
        wanted = [int(i) for i in ids]
        with self._lock:
            marks = ",".join("?" * len(wanted))
            rows = dict(
                self._conn.execute(f"SELECT id, key FROM entries WHERE id IN ({marks})", wanted).fetchall()
            )
        return np.stack([np.frombuffer(rows[i], dtype=np.float32) for i in wanted])

    @_translated
    def documents(self) -> list[DocumentInfo]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT d.id, d.name, d.source, d.tokens, d.complete, "
                "(SELECT COUNT(*) FROM entries e WHERE e.document_id = d.id) FROM documents d ORDER BY d.id"
            ).fetchall()
        return [DocumentInfo(r[0], r[1], r[2], r[3], r[5], bool(r[4])) for r in rows]

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
        ids = backend.encode(text).ids
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
            self._data_version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            self.save_index()
            entries = self.refresh()
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


def conn_path(conn: sqlite3.Connection) -> str:
    rows = conn.execute("PRAGMA database_list").fetchall()
    return rows[0][2] if rows else "store"


def _record(row, document_text: str) -> MemoryRecord:
    entry_id, next_token, token_text, document_id, document_name, position, char_start, char_end = row
    before = min(char_start, SNIPPET_BEFORE)
    snippet = document_text[char_start - before : char_end + SNIPPET_AFTER]
    return MemoryRecord(
        id=entry_id,
        next_token=next_token,
        token_text=token_text,
        document_id=document_id,
        document_name=document_name,
        position=position,
        snippet=snippet,
        highlight=(before, before + (char_end - char_start)),
    )
