"""How a Trace holds attention: dense rows (format 1), or queries and keys to rebuild rows from (format 2).

Both stores answer the same calls: `rows_at(step)` [L, A, step+1], `row(step, layer, head)`,
`matrix(layer, head, start, stop)`, `tensor(T)` (the dense [L, A, T, T]). `QKStore` rebuilds a row
exactly as the model computed it: softmax(q·Kᵀ·scale), Gemma 2's soft-cap (tanh(x/c)·c) before the
mask, the causal mask, and a sliding layer's window (a query at t sees keys t-W+1..t), over the
stored keys. The sums run in float64 and rows come out in float32: the products of float32 values
are exact there, so a row comes out the same bit for bit whichever call asks (one head, one step,
a matrix), whatever order BLAS sums in. A small cache keeps the last steps' rows and each layer's
keys in float64.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import wraps

import numpy as np

from memviz.errors import MemvizError

ROW_CACHE_STEPS = 4  # rows_at results kept: a panel redrawing the cursor's step rebuilds nothing
KEY_CACHE_BYTES = 96 * 2**20  # float64 keys kept, per layer (least recently used go first)
MATRIX_BLOCK = 256  # queries rebuilt at a time for a matrix (bounded temporaries)


@dataclass(frozen=True)
class AttentionLayout:
    """What rebuilding a row needs: head shapes and, per layer, scale, sliding window and soft-cap."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    scale: tuple[float, ...]
    sliding_window: tuple[int | None, ...]
    softcap: tuple[float | None, ...]

    @property
    def num_layers(self) -> int:
        return len(self.scale)

    @property
    def group(self) -> int:
        """Query heads per key/value head."""
        return self.num_heads // self.num_kv_heads

    def kv_head_of(self, head: int) -> int:
        return head // self.group

    def as_manifest(self) -> dict:
        return {
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "scale": list(self.scale),
            "sliding_window": list(self.sliding_window),
            "softcap": list(self.softcap),
        }

    @classmethod
    def from_manifest(cls, raw: object, where: str = "trace") -> AttentionLayout:
        """A layout from a manifest's `attention_layout`; one line naming what is wrong."""

        def bad(message: str) -> MemvizError:
            return MemvizError(
                f"{where}: not a consistent memviz trace: manifest 'attention_layout' {message}"
            )

        if not isinstance(raw, dict):
            raise bad("is not an object")
        counts = {}
        for key in ("num_heads", "num_kv_heads", "head_dim"):
            n = raw.get(key)
            if not (type(n) is int and 1 <= n <= 2**16):
                raise bad(f"'{key}' is {n!r}, not a count")
            counts[key] = n
        if counts["num_heads"] % counts["num_kv_heads"]:
            raise bad(f"has {counts['num_heads']} query heads, not a multiple of {counts['num_kv_heads']}")
        lists = {}
        for key in ("scale", "sliding_window", "softcap"):
            value = raw.get(key)
            if not isinstance(value, list) or not 1 <= len(value) <= 2**12:
                raise bad(f"'{key}' is not a list of one value per layer")
            lists[key] = value
        if len({len(v) for v in lists.values()}) != 1:
            raise bad("'scale', 'sliding_window' and 'softcap' differ in length")
        for s in lists["scale"]:
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and s > 0):
                raise bad(f"'scale' holds {s!r}, not a positive number")
        for w in lists["sliding_window"]:
            if w is not None and not (type(w) is int and w >= 1):
                raise bad(f"'sliding_window' holds {w!r}, not a window (or null)")
        for c in lists["softcap"]:
            if c is not None and (isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0):
                raise bad(f"'softcap' holds {c!r}, not a positive number (or null)")
        return cls(
            scale=tuple(float(s) for s in lists["scale"]),
            sliding_window=tuple(lists["sliding_window"]),
            softcap=tuple(None if c is None else float(c) for c in lists["softcap"]),
            **counts,
        )


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in place; -inf entries become 0."""
    logits -= logits.max(axis=-1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=-1, keepdims=True)
    return logits


class DenseRows:
    """Format 1: every step's rows [L, A, t+1] as the model gave them (float16 or float32)."""

    kind = "dense"

    def __init__(self, dtype=None) -> None:
        self.rows: list[np.ndarray] = []
        self.dtype = dtype

    @classmethod
    def from_tensor(cls, attention: np.ndarray) -> DenseRows:
        store = cls(attention.dtype)
        T = attention.shape[2]
        store.rows = [np.ascontiguousarray(attention[:, :, t, : t + 1]) for t in range(T)]
        return store

    def append(self, row: np.ndarray) -> None:
        self.rows.append(np.asarray(row, dtype=self.dtype or np.float32))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int] | None:
        if not self.rows:
            return None
        layers, heads = self.rows[0].shape[:2]
        return int(layers), int(heads)

    def rows_at(self, step: int) -> np.ndarray:
        return self.rows[step]

    def row(self, step: int, layer: int, head: int) -> np.ndarray:
        return self.rows[step][layer, head]

    def matrix(self, layer: int, head: int, start: int, stop: int) -> np.ndarray:
        block = np.zeros((stop - start, stop), dtype=np.float32)
        for t in range(start, stop):
            block[t - start, : t + 1] = self.rows[t][layer, head]
        return block

    def tensor(self, T: int) -> np.ndarray:
        L, A = self.rows[0].shape[:2]
        dense = np.zeros((L, A, T, T), dtype=self.rows[0].dtype)
        for t, row in enumerate(self.rows[:T]):
            dense[:, :, t, : t + 1] = row
        return dense

    @property
    def ram_nbytes(self) -> int:
        return sum(r.nbytes for r in self.rows)

    @property
    def disk_nbytes(self) -> int:
        return 0


def _locked(method):
    """Run under the store's lock: the UI thread and the worker may both read (and fill the caches)."""

    @wraps(method)
    def run(self, *args):
        with self._lock:
            return method(self, *args)

    return run


class QKStore:
    """Format 2: per step the queries [L, A, d] and new keys [L, A_kv, d]; rows rebuilt on demand.

    `queries` and `keys` are any [T, ...] array sources with `view()` (memviz.core.npy_spool's
    NpySpool while a run goes on, or a read-only memory map of a saved file), so RAM stays bounded.
    """

    kind = "qk"

    def __init__(self, layout: AttentionLayout, queries, keys) -> None:
        self.layout = layout
        self.queries = queries
        self.keys = keys
        self._lock = threading.RLock()
        self._rows: OrderedDict[int, np.ndarray] = OrderedDict()
        self._keys64: OrderedDict[int, tuple[np.ndarray, int]] = (
            OrderedDict()
        )  # layer -> ([A_kv, cap, d] f32, filled)

    @property
    def dtype(self):
        return self.queries.view().dtype

    def append(self, q: np.ndarray, k: np.ndarray) -> None:
        self.queries.append(q)
        self.keys.append(k)

    def __len__(self) -> int:
        return min(len(self.queries), len(self.keys))

    @property
    def shape(self) -> tuple[int, int]:
        return self.layout.num_layers, self.layout.num_heads

    # -- keys in float64, per layer -------------------------------------------------------------
    def _layer_keys(self, layer: int, n: int) -> np.ndarray:
        """Keys 0..n-1 of one layer, [A_kv, n, d] float64: cached, extended in place as the run grows
        (the buffer doubles, so a run's T steps copy O(T) keys in all)."""
        buffer, filled = self._keys64.get(layer, (None, 0))
        if filled < n:
            if buffer is None or buffer.shape[1] < n:
                size = max(n, 2 * filled, 64)
                grown = np.empty((self.layout.num_kv_heads, size, self.layout.head_dim), dtype=np.float64)
                if filled:
                    grown[:, :filled] = buffer[:, :filled]
                buffer = grown
            top = min(buffer.shape[1], len(self))
            buffer[:, filled:top] = self.keys.view()[filled:top, layer].transpose(1, 0, 2)
            filled = top
            self._keys64[layer] = (buffer, filled)
            self._trim_keys(keep=layer)
        self._keys64.move_to_end(layer)
        return buffer[:, :n]

    def _trim_keys(self, keep: int) -> None:
        total = sum(b.nbytes for b, _ in self._keys64.values())
        for layer in list(self._keys64):
            if total <= KEY_CACHE_BYTES:
                break
            if layer != keep:
                total -= self._keys64.pop(layer)[0].nbytes

    # -- rebuilding ----------------------------------------------------------------------------------
    def _logits(self, layer: int, q: np.ndarray, lo: int, n: int) -> np.ndarray:
        """Scaled (and soft-capped) logits of queries q [A or 1, m, d] (per key/value group) over
        keys lo..n-1: [A_kv, g*m, n-lo] grouped as the heads are."""
        keys = self._layer_keys(layer, n)[:, lo:n]  # [A_kv, n-lo, d]
        logits = np.matmul(q, keys.transpose(0, 2, 1))  # [A_kv, g*m, n-lo]
        logits *= self.layout.scale[layer]
        return self._cap(layer, logits)

    def layer_rows(self, step: int, layer: int) -> np.ndarray:
        """Every head's row of the query at `step` in one layer: [A, step+1] float32."""
        lay = self.layout
        n = step + 1
        window = lay.sliding_window[layer]
        lo = max(0, n - window) if window else 0
        q = np.asarray(self.queries.view()[step, layer], dtype=np.float64)  # [A, d]
        q = q.reshape(lay.num_kv_heads, lay.group, lay.head_dim)
        probs = softmax_rows(self._logits(layer, q, lo, n)).reshape(lay.num_heads, n - lo)
        if lo == 0:
            return probs.astype(np.float32)
        out = np.zeros((lay.num_heads, n), dtype=np.float32)
        out[:, lo:] = probs
        return out

    @_locked
    def rows_at(self, step: int) -> np.ndarray:
        found = self._rows.get(step)
        if found is None:
            found = np.stack([self.layer_rows(step, layer) for layer in range(self.layout.num_layers)])
            found.flags.writeable = False
            self._rows[step] = found
            while len(self._rows) > ROW_CACHE_STEPS:
                self._rows.popitem(last=False)
        else:
            self._rows.move_to_end(step)
        return found

    @_locked
    def row(self, step: int, layer: int, head: int) -> np.ndarray:
        cached = self._rows.get(step)
        if cached is not None:
            return cached[layer, head]
        lay = self.layout
        n = step + 1
        window = lay.sliding_window[layer]
        lo = max(0, n - window) if window else 0
        q = np.asarray(self.queries.view()[step, layer, head], dtype=np.float64)[None, None, :]
        kv = lay.kv_head_of(head)
        keys = self._layer_keys(layer, n)[kv : kv + 1, lo:n]
        logits = np.matmul(q, keys.transpose(0, 2, 1))[0]  # [1, n-lo]
        logits = self._cap(layer, logits * lay.scale[layer])
        out = np.zeros(n, dtype=np.float32)
        out[lo:] = softmax_rows(logits)[0]
        return out

    def _cap(self, layer: int, logits: np.ndarray) -> np.ndarray:
        cap = self.layout.softcap[layer]
        if cap is not None:
            logits /= cap
            np.tanh(logits, out=logits)
            logits *= cap
        return logits

    @_locked
    def matrix(self, layer: int, head: int, start: int, stop: int) -> np.ndarray:
        """Queries start..stop-1 of one head over keys 0..stop-1, zero where masked: [stop-start, stop]."""
        lay = self.layout
        out = np.zeros((stop - start, stop), dtype=np.float32)
        if stop <= start:
            return out
        kv = lay.kv_head_of(head)
        keys = self._layer_keys(layer, stop)[kv]  # [stop, d]
        window = lay.sliding_window[layer]
        columns = np.arange(stop)
        for a in range(start, stop, MATRIX_BLOCK):
            b = min(stop, a + MATRIX_BLOCK)
            q = np.asarray(self.queries.view()[a:b, layer, head], dtype=np.float64)  # [m, d]
            logits = self._cap(layer, (q @ keys[:b].T) * lay.scale[layer])  # [m, b]
            t = np.arange(a, b)[:, None]
            hidden = columns[None, :b] > t
            if window:
                hidden |= columns[None, :b] <= t - window
            logits[hidden] = -np.inf
            out[a - start : b - start, :b] = softmax_rows(logits)
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
        """What the store holds in RAM: the caches (q/k themselves are on disk)."""
        keys = sum(b.nbytes for b, _ in self._keys64.values())
        return keys + sum(r.nbytes for r in self._rows.values()) + _ram_of(self.queries) + _ram_of(self.keys)

    @property
    def disk_nbytes(self) -> int:
        return _disk_of(self.queries) + _disk_of(self.keys)


def _ram_of(source) -> int:
    return int(getattr(source, "ram_nbytes", 0))


def _disk_of(source) -> int:
    return int(getattr(source, "disk_nbytes", 0))
