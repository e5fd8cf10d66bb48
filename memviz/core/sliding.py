"""Attention of a run that reads past its context window in windows that slide (`memviz trace --slide`).

When a transformer's cache is full the backend re-primes it: it keeps the last C tokens, re-encodes
them at positions 0..C-1 in one batched pass and reads on (TransformerBackend.reprime). Those C
tokens get new keys (new positions, a shorter context), so a window's rows are rebuilt from its own
queries and keys only: each window is a segment, a QKStore over window-local positions whose first
C rows are the carried prefix's q/k from the re-prime pass, followed by the window's own steps.

`SlidingStore` answers the calls QKStore answers (rows_at, row, matrix, tensor, ...) over trace
steps: step t of a window that starts at token position s is the segment's local position t - s,
and its row [t+1] is the segment's row with zeros before s (tokens the step cannot see).

Storage (the trace format's `segment_queries`, `segment_keys`, `segments`): one pair of [N, ...]
sources holding the segments one after the other, and per segment (first step, window start, first
row in the sources). Segment k's rows are (first_step - window_start) prefix rows, then its steps.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict

import numpy as np

from memviz.core.attention_store import AttentionLayout, QKStore
from memviz.errors import MemvizError

LIVE_SEGMENTS = 4  # segment stores (each with its own row and key caches) kept between calls
ROW_CACHE_STEPS = 4  # padded rows_at results kept (a panel redraws the cursor's step)


class _Rows:
    """Rows lo..hi-1 of a source with `view()` (hi None: to its end, the growing segment), with the
    face of a spool: `view()`, `len()` and, for the growing segment, `append`."""

    def __init__(self, source, lo: int, hi: int | None) -> None:
        self.source, self.lo, self.hi = source, lo, hi

    def view(self) -> np.ndarray:
        return self.source.view()[self.lo : self.hi]

    def __len__(self) -> int:
        return (len(self.source) if self.hi is None else self.hi) - self.lo

    def append(self, row) -> None:
        if self.hi is not None:
            raise MemvizError("a finished window of a sliding trace takes no more rows")
        self.source.append(row)


class SlidingStore:
    """Format 2 over windows that slide: per-window QKStores behind QKStore's interface."""

    kind = "qk"

    def __init__(self, layout: AttentionLayout, queries, keys, segments=None, steps: int = 0) -> None:
        """`queries`, `keys`: sources of every segment's rows (NpySpool, FrozenRows); `segments`:
        rows (first_step, window_start, first_row), [[0, 0, 0]] for a new run; `steps`: how many
        trace steps the sources hold (a new run: 0)."""
        self.layout = layout
        self.queries = queries
        self.keys = keys
        table = np.zeros((1, 3), np.int64) if segments is None else np.asarray(segments, np.int64)
        self._first = [int(x) for x in table[:, 0]]  # first trace step of each segment
        self._start = [int(x) for x in table[:, 1]]  # token position of its local position 0
        self._row = [int(x) for x in table[:, 2]]  # its first row in queries/keys
        self._steps = int(steps)
        self._lock = threading.RLock()
        self._live: OrderedDict[int, QKStore] = OrderedDict()
        self._rows: OrderedDict[int, np.ndarray] = OrderedDict()

    # -- building ----------------------------------------------------------------------------------
    def start_window(self, step: int, window_start: int, queries: np.ndarray, keys: np.ndarray) -> None:
        """A new window begins at trace step `step` (not yet appended); it sees tokens from
        `window_start` on, whose re-encoded q/k [step - window_start, L, ...] are its prefix."""
        with self._lock:
            if (
                step != self._steps
                or not self._first[-1] < step
                or not self._start[-1] <= window_start <= step
            ):
                raise MemvizError(f"a window cannot start at step {step} (window start {window_start})")
            if len(queries) != step - window_start or len(keys) != len(queries):
                raise MemvizError(
                    f"a window from {window_start} at step {step} needs {step - window_start} rows"
                )
            self._live.pop(len(self._first) - 1, None)  # the last segment's store had an open end
            self._first.append(step)
            self._start.append(window_start)
            self._row.append(len(self.queries))
            for q, k in zip(queries, keys, strict=True):
                self.queries.append(q)
                self.keys.append(k)

    def append(self, q: np.ndarray, k: np.ndarray) -> None:
        with self._lock:
            self.queries.append(q)
            self.keys.append(k)
            self._steps += 1

    def truncate(self, steps: int) -> None:
        """Forget the steps from `steps` on, and a window begun there (a step that could not be
        written whole: Trace._roll_back)."""
        with self._lock:
            if steps >= self._steps and self._first[-1] < steps:
                return
            n = max(1, bisect.bisect_left(self._first, steps)) if steps else 1
            del self._first[n:], self._start[n:], self._row[n:]
            rows = self._row[-1] + steps - self._start[-1] if steps else 0
            self.queries.truncate(rows)
            self.keys.truncate(rows)
            self._steps = min(self._steps, steps)
            self._live.clear()
            self._rows.clear()

    # -- what it holds -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._steps

    @property
    def shape(self) -> tuple[int, int]:
        return self.layout.num_layers, self.layout.num_heads

    @property
    def dtype(self):
        return self.queries.view().dtype

    def table(self, steps: int | None = None) -> tuple[np.ndarray, int]:
        """The first `steps` steps' (default: all) segments [S, 3] int64 (first step, window start,
        first row) and the rows of queries/keys they hold, read together (a save on another thread
        while the run appends gets a consistent pair)."""
        with self._lock:
            steps = self._steps if steps is None else min(int(steps), self._steps)
            n = bisect.bisect_left(self._first, steps) if steps else 1
            table = np.array([self._first[:n], self._start[:n], self._row[:n]], np.int64).T.reshape(-1, 3)
            rows = self._row[n - 1] + steps - self._start[n - 1] if steps else 0
            return table, int(rows)

    @property
    def segments(self) -> np.ndarray:
        """[S, 3] int64: per segment (first step, window start, first row), segments with steps only."""
        return self.table()[0]

    @property
    def rows_held(self) -> int:
        """Rows of queries/keys the complete steps need (the saved members' length)."""
        return self.table()[1]

    def window_start(self, step: int) -> int:
        return self._start[self._segment_of(step)]

    def step_qk(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The step's own queries [L, A, d] and keys [L, A_kv, d], as recorded."""
        k = self._segment_of(step)
        row = self._row[k] + step - self._start[k]
        return self.queries.view()[row], self.keys.view()[row]

    def _segment_of(self, step: int) -> int:
        return bisect.bisect_right(self._first, step) - 1

    def _store(self, k: int) -> QKStore:
        """Segment k's QKStore (its queries and keys at window-local positions), kept while used."""
        store = self._live.get(k)
        if store is None:
            last = k == len(self._first) - 1
            hi = None if last else self._row[k] + self._first[k + 1] - self._start[k]
            lo = self._row[k]
            store = QKStore(self.layout, _Rows(self.queries, lo, hi), _Rows(self.keys, lo, hi))
            self._live[k] = store
            while len(self._live) > LIVE_SEGMENTS:
                self._live.popitem(last=False)
        self._live.move_to_end(k)
        return store

    # -- rows --------------------------------------------------------------------------------------
    def rows_at(self, step: int) -> np.ndarray:
        """[L, A, step+1] float32: the window's rows, zero before its first token."""
        with self._lock:
            found = self._rows.get(step)
            if found is not None:
                self._rows.move_to_end(step)
                return found
            k = self._segment_of(step)
            start = self._start[k]
            local = self._store(k).rows_at(step - start)
            if start:
                found = np.zeros((*local.shape[:2], step + 1), np.float32)
                found[:, :, start:] = local
                found.flags.writeable = False
            else:
                found = local
            self._rows[step] = found
            while len(self._rows) > ROW_CACHE_STEPS:
                self._rows.popitem(last=False)
            return found

    def row(self, step: int, layer: int, head: int) -> np.ndarray:
        with self._lock:
            cached = self._rows.get(step)
            if cached is not None:
                return cached[layer, head]
            k = self._segment_of(step)
            start = self._start[k]
            local = self._store(k).row(step - start, layer, head)
            if not start:
                return local
            out = np.zeros(step + 1, np.float32)
            out[start:] = local
            return out

    def matrix(self, layer: int, head: int, start: int, stop: int) -> np.ndarray:
        """Queries start..stop-1 over keys 0..stop-1: each window's block over its own tokens."""
        out = np.zeros((max(0, stop - start), stop), np.float32)
        with self._lock:
            for k in range(len(self._first)):
                end = self._first[k + 1] if k + 1 < len(self._first) else stop
                a, b = max(start, self._first[k]), min(stop, end)
                if a >= b:
                    continue
                s = self._start[k]
                block = self._store(k).matrix(layer, head, a - s, b - s)  # [b-a, b-s]
                out[a - start : b - start, s:b] = block
        return out

    def tensor(self, T: int) -> np.ndarray:
        L, A = self.shape
        dense = np.zeros((L, A, T, T), dtype=np.float32)
        for layer in range(L):
            for head in range(A):
                dense[layer, head] = self.matrix(layer, head, 0, T)
        return dense

    @property
    def ram_nbytes(self) -> int:
        with self._lock:
            live = sum(s.ram_nbytes for s in self._live.values())
            rows = sum(r.nbytes for r in self._rows.values())  # padded copies (some shared: an upper bound)
        return live + rows + _ram_of(self.queries) + _ram_of(self.keys)

    @property
    def disk_nbytes(self) -> int:
        return int(getattr(self.queries, "disk_nbytes", 0)) + int(getattr(self.keys, "disk_nbytes", 0))


def _ram_of(source) -> int:
    return int(getattr(source, "ram_nbytes", 0))


def segments_from_starts(window_start: np.ndarray) -> tuple[np.ndarray, int]:
    """The segments table [S, 3] and the rows of queries/keys it needs, from the per-step
    `window_start` column alone (a window begins where it changes): what a crashed run's folder
    (memviz.core.run_folder) rebuilds its table from."""
    starts = np.asarray(window_start, np.int64)
    T = len(starts)
    first = np.concatenate([[0], np.flatnonzero(np.diff(starts)) + 1]).astype(np.int64)
    start = starts[first] if T else np.zeros(1, np.int64)
    row = np.concatenate([[0], np.cumsum(first[1:] - start[:-1])]).astype(np.int64)
    rows = int(row[-1] + T - start[-1]) if T else 0
    return np.stack([first, start, row], axis=1), rows


def check_segments(segments: np.ndarray, window_start: np.ndarray | None, rows: int, T: int) -> str | None:
    """What is wrong with a saved sliding trace's tables (None: they agree): `segments` [S, 3]
    (first step, window start, first row), the `window_start` column [T], `rows` held per member."""
    if segments.ndim != 2 or segments.shape[1] != 3 or len(segments) == 0:
        return f"'segments' has shape {list(segments.shape)}, expected [S, 3] (first step, window start, first row)"
    first, start, row = (segments[:, i].astype(np.int64) for i in range(3))
    if (first[0], start[0], row[0]) != (0, 0, 0):
        return "'segments' must begin with the window (0, 0, 0)"
    if (np.diff(first) <= 0).any() or first[-1] >= max(T, 1):
        return f"'segments' first steps must rise within the trace's {T} steps"
    if (start < 0).any() or (start > first).any() or (np.diff(start) < 0).any():
        return "'segments' window starts must rise and never pass their first step"
    # each segment holds its carried prefix (first - start rows), then its steps
    expected = np.concatenate([[0], np.cumsum(first[1:] - start[:-1])])
    if not np.array_equal(row, expected):
        return "'segments' first rows do not follow from the windows (prefix, then steps)"
    need = int(row[-1] + T - start[-1]) if T else 0
    if rows != need:
        return f"'segment_queries' and 'segment_keys' hold {rows} rows; the segments need {need}"
    if window_start is not None:
        per_step = np.repeat(start, np.diff(np.concatenate([first, [T]])))
        if window_start.shape != (T,) or not np.array_equal(window_start, per_step):
            return "'window_start' disagrees with 'segments'"
    return None
