"""The memory store's SQLite file: where it lives, its schema, opening and creating it, and the
lock other processes may hold (waited for, with a notice, then "busy" in one line).

Split out of store.py (issue 14); MemoryStore (store.py) is the one user.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from memviz.errors import MemvizError

STORE_VERSION = 1
LOCK_NOTICE_S = 1.0  # after this long waiting for another process's lock, say so ...
LOCK_WAIT_S = 10.0  # ... and after this long in all, give up: "busy"
RETRY_S = 0.02  # between tries when SQLite answered "locked" without waiting

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


def default_store_path(model_name: str) -> Path:
    """<user data dir>/memviz/memory/<model-name>.sqlite"""
    from platformdirs import user_data_dir

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name) or "model"
    return Path(user_data_dir("memviz")) / "memory" / f"{safe}.sqlite"


def translated(method):
    """A database error inside a store method becomes a one-line MemvizError (busy, corrupt)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None

    return wrapper


def is_locked(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock (SQLite says "locked" or "busy")."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def store_error(path: Path, exc: sqlite3.Error) -> MemvizError:
    """What a database error means for the user, in one line."""
    text = str(exc)
    if is_locked(exc):
        return MemvizError(
            f"{path}: busy: another process holds the store's lock (try again when it is done)"
        )
    if "malformed" in text or "corrupt" in text.lower():
        return MemvizError(f"{path}: is corrupt ({text}); add its documents again to a new store")
    return MemvizError(f"{path}: not a memviz memory store ({text})")


def waiting(conn: sqlite3.Connection, path: Path, notice: Callable[[str], None] | None, work: Callable):
    """Run `work()` (one statement or transaction); while another process holds the lock, wait
    LOCK_WAIT_S at most, saying so after LOCK_NOTICE_S instead of waiting in silence.

    It tries again until then rather than trusting SQLite's busy handler alone: around a new file
    becoming a WAL store, SQLite can answer "locked" at once, without calling the handler."""
    began = time.monotonic()
    noticed = False
    conn.execute(f"PRAGMA busy_timeout = {int(LOCK_NOTICE_S * 1000)}")
    try:
        while True:
            try:
                return work()
            except sqlite3.OperationalError as exc:
                if not is_locked(exc):
                    raise
            waited = time.monotonic() - began
            if waited >= LOCK_WAIT_S:
                raise MemvizError(
                    f"{path}: busy: another process holds the store's lock "
                    f"(waited {LOCK_WAIT_S:g} s; try again when it is done)"
                )
            if not noticed and waited >= LOCK_NOTICE_S and notice is not None:
                notice(f"{path}: waiting for another process that holds the store's lock")
                noticed = True
            time.sleep(RETRY_S)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(LOCK_WAIT_S * 1000)}")


def store_path(path: str | os.PathLike | None, backend, create: bool) -> Path:
    """The store's file (None: the default one for backend's model), its folder made when creating."""
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
    return path


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=LOCK_WAIT_S)


def prepare(
    conn: sqlite3.Connection, path: Path, backend, create: bool, notice: Callable[[str], None] | None
) -> None:
    """WAL mode, the schema when creating, and the checks: a memviz store, not too new, the backend's.

    sqlite3 errors pass through: the caller (MemoryStore.open) closes the connection and words them."""
    waiting(conn, path, notice, lambda: conn.execute("PRAGMA journal_mode=WAL"))
    conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: commits survive a killed process
    # Reads go through `waiting` too: while another process turns a new file into a WAL store, SQLite
    # can answer "locked" at once, without its busy handler (seen once in 10 racing opens under load).
    if not waiting(conn, path, notice, lambda: has_tables(conn)):
        if not create:
            raise MemvizError(f"{path}: not a memviz memory store")
        waiting(conn, path, notice, lambda: initialise(conn, backend))
    meta = dict(waiting(conn, path, notice, lambda: conn.execute("SELECT key, value FROM meta").fetchall()))
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


def has_tables(conn: sqlite3.Connection) -> bool:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return {"meta", "documents", "entries"} <= tables


def initialise(conn: sqlite3.Connection, backend) -> None:
    """Create the schema under the write lock, after looking again: another process may have
    created the store since this one looked (the race two `memory add` on a new store ran)."""
    key_dim = int(backend.memory_key_dim)  # declared by the backend: creating a store runs no model
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if has_tables(conn) and conn.execute("SELECT COUNT(*) FROM meta").fetchone()[0]:
            conn.execute("COMMIT")  # created by another process meanwhile
            return
        if tables - {"meta", "documents", "entries"}:  # another program's database: leave it alone
            raise MemvizError(f"{conn_path(conn)}: not a memviz memory store")
        create_schema(conn, backend, key_dim)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def create_schema(conn: sqlite3.Connection, backend, key_dim: int) -> None:
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


def conn_path(conn: sqlite3.Connection) -> str:
    rows = conn.execute("PRAGMA database_list").fetchall()
    return rows[0][2] if rows else "store"
