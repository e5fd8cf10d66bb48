"""What the memory store gives back for display: records with their snippet, documents, the
result of an add; and reading them from the database, with the document texts snippets are cut from
kept in memory.

Split out of store.py (issue 14): RecordReader is a part of MemoryStore (it uses the store's
connection and lock).
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from memviz.memory.store_db import translated

SNIPPET_BEFORE = 80  # characters of context shown before the stored token
SNIPPET_AFTER = 40
DOCUMENT_CACHE_CHARS = 16_000_000  # document texts kept in memory for snippets (16 to 64 MB at most)


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


class RecordReader:
    """The reading half of MemoryStore: records, keys and documents out of the database."""

    _conn: sqlite3.Connection
    _lock: threading.RLock
    _documents: OrderedDict[int, str]  # id -> text, see _document_text
    _document_chars: int

    @translated
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

    @translated
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

    @translated
    def keys(self, ids) -> np.ndarray:
        """Stored keys [n, key_dim] for the given ids (all present)."""
        wanted = [int(i) for i in ids]
        with self._lock:
            marks = ",".join("?" * len(wanted))
            rows = dict(
                self._conn.execute(f"SELECT id, key FROM entries WHERE id IN ({marks})", wanted).fetchall()
            )
        return np.stack([np.frombuffer(rows[i], dtype=np.float32) for i in wanted])

    @translated
    def documents(self) -> list[DocumentInfo]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT d.id, d.name, d.source, d.tokens, d.complete, "
                "(SELECT COUNT(*) FROM entries e WHERE e.document_id = d.id) FROM documents d ORDER BY d.id"
            ).fetchall()
        return [DocumentInfo(r[0], r[1], r[2], r[3], r[5], bool(r[4])) for r in rows]
