"""How a Trace holds attention: dense rows (format 1), or queries and keys to rebuild rows from (format 2).

Both stores answer the same calls: `rows_at(step)` [L, A, step+1], `row(step, layer, head)`,
`matrix(layer, head, start, stop)`, `tensor(T)` (the dense [L, A, T, T]). `QKStore` rebuilds a row
as the model computed it: softmax(q·Kᵀ·scale), Gemma 2's soft-cap (tanh(x/c)·c) before the mask,
the causal mask, and a sliding layer's window (a query at t sees keys t-W+1..t), over the stored
keys. The products and sums of q·Kᵀ run in float32 BLAS, as the model's own eager attention does
(equal to it within 1e-4), the softmax's sum in float64, rows come out in float32. A row comes out
the same bit for bit whichever call asks (one head, one step, a matrix): every call computes a
head's logits with the same BLAS call (its query times the window's keys), because a
BLAS sums in an order that depends on the shapes it is given. A cache keeps the last steps' rows
and every layer's keys in float32, d-major, so all heads' rows at a step are one pass over the keys.
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
KEY_CACHE_BYTES = 384 * 2**20  # float32 keys kept, all layers together (least recently used go first):
# every layer of a Llama-3.2-1B-shaped run at T = 8192 (256 MiB), so no step reconverts keys
KEY_COPY_BLOCK = 256  # steps of keys copied (transposed) from the source into the cache at a time


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

    Every call computes a head's logits with one and the same BLAS call, `_logits`: the head's
    query vector times its layer's keys in the window (a matrix-vector product), float32. So
    `rows_at` (every head), `row` (one head) and `matrix` (one head, query by query) agree bit for
    bit: a panel's incremental copy equals a fresh read.
    """

    kind = "qk"

    def __init__(self, layout: AttentionLayout, queries, keys, capacity: int | None = None) -> None:
        self.layout = layout
        self.queries = queries
        self.keys = keys
        # the steps a growing run is expected to reach (its context window): the key cache is made
        # that long at once when every layer fits, so the run never waits for a growth copy (at
        # T = 8,192 of GPT-2 small's shape, 300 MB copied under the lock: a 240 ms stall of the UI
        # thread's row reads). The pages of a buffer are only touched as keys are written.
        self.capacity = capacity
        self._lock = threading.RLock()
        self._rows: OrderedDict[int, np.ndarray] = OrderedDict()
        self._keys32: OrderedDict[int, tuple[np.ndarray, int]] = OrderedDict()  # layer -> (buffer, filled)

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

    # -- keys in float32, per layer, d-major ----------------------------------------------------
    def _layer_keys(self, layer: int, n: int) -> np.ndarray:
        """Keys 0..n-1 of one layer, [A_kv, d, n] float32 (d-major: what a head's logits read, in
        a row). Cached while KEY_CACHE_BYTES allows and extended in place as the run grows (the
        buffer grows by a quarter or more, so a run's T steps copy O(T) keys in all); a layer that
        does not fit is read from the source each time."""
        buffer, filled = self._keys32.get(layer, (None, 0))
        if filled < n:
            if not self._make_room([layer], n):
                # laid out as the cache is (d-major, rows longer than n): the same BLAS call
                lay = self.layout
                keys = np.empty((lay.num_kv_heads, lay.head_dim, n + 1), dtype=np.float32)
                keys[:, :, :n] = self.keys.view()[:n, layer].transpose(1, 2, 0)
                return keys[:, :, :n]
            self._fill([layer])
            self._trim_keys(keep=layer)
            buffer, filled = self._keys32[layer]
        self._keys32.move_to_end(layer)
        return buffer[:, :, :n]

    def _fill_all(self, n: int) -> None:
        """Every layer's keys 0..n-1 cached, when they fit together: one pass over the source's
        steps (contiguous there: [T, L, A_kv, d]) instead of one strided pass per layer."""
        every = list(range(self.layout.num_layers))
        layers = [layer for layer in every if self._keys32.get(layer, (None, 0))[1] < n]
        if layers and self._make_room(every, n, together=True):
            self._fill(layers)

    @property
    def _key_bytes(self) -> int:
        """One step's keys of one layer in the float32 cache: A_kv x d x 4 bytes."""
        return self.layout.num_kv_heads * self.layout.head_dim * 4

    def _make_room(self, layers: list[int], n: int, together: bool = False) -> bool:
        """Grow the layers' buffers to hold n keys; False (nothing changed) when one layer would not
        fit in KEY_CACHE_BYTES (all `layers` together, with `together`)."""
        lay = self.layout
        column = self._key_bytes
        sizes = {}
        for layer in layers:
            buffer, filled = self._keys32.get(layer, (None, 0))
            have = 0 if buffer is None else buffer.shape[2]
            # at least 64 keys and one more than asked: a short row's keys handed to BLAS are never
            # a contiguous [d, n] (numpy multiplies a contiguous [d, <= 3] another way: other bits)
            want = max(n + 1, filled + filled // 4, 64)
            if not hasattr(self.keys, "append"):  # a saved trace does not grow: no room to spare
                want = max(n + 1, min(want, len(self) + 1), 64)
            elif self.capacity is not None and n <= self.capacity:
                if (
                    lay.num_layers * (self.capacity + 1) * column <= KEY_CACHE_BYTES
                ):  # the context window at once (past it: growth again)
                    want = max(want, self.capacity + 1)
            sizes[layer] = have if have > n else -(-want // 64) * 64
        if (sum(sizes.values()) if together else max(sizes.values())) * column > KEY_CACHE_BYTES:
            return False
        for layer, size in sizes.items():
            buffer, filled = self._keys32.get(layer, (None, 0))
            if buffer is None or buffer.shape[2] < size:
                grown = np.empty((lay.num_kv_heads, lay.head_dim, size), dtype=np.float32)
                if filled:
                    grown[:, :, :filled] = buffer[:, :, :filled]
                self._keys32[layer] = (grown, filled)
        return True

    def _fill(self, layers: list[int]) -> None:
        """Copy the source's keys into the layers' buffers up to their room (or the steps there are),
        KEY_COPY_BLOCK steps at a time (the transposing copy stays in the CPU's caches)."""
        source = self.keys.view()  # its length, not len(self): the run may append a step meanwhile
        tops = {layer: min(self._keys32[layer][0].shape[2], len(source)) for layer in layers}
        start = min(self._keys32[layer][1] for layer in layers)
        for a in range(start, max(tops.values()), KEY_COPY_BLOCK):
            b = min(max(tops.values()), a + KEY_COPY_BLOCK)
            block = np.asarray(source[a:b])  # [b-a, L, A_kv, d]: one contiguous read
            for layer in layers:
                buffer, filled = self._keys32[layer]
                lo, hi = max(a, filled), min(b, tops[layer])
                if lo < hi:
                    buffer[:, :, lo:hi] = block[lo - a : hi - a, layer].transpose(1, 2, 0)
        for layer in layers:
            self._keys32[layer] = (self._keys32[layer][0], tops[layer])

    def _trim_keys(self, keep: int) -> None:
        total = sum(b.nbytes for b, _ in self._keys32.values())
        for layer in list(self._keys32):
            if total <= KEY_CACHE_BYTES:
                break
            if layer != keep:
                total -= self._keys32.pop(layer)[0].nbytes

    # -- rebuilding ----------------------------------------------------------------------------------
    def _window(self, layer: int, step: int) -> int:
        """The first key the query at `step` sees in `layer`."""
        window = self.layout.sliding_window[layer]
        return max(0, step + 1 - window) if window else 0

    def _queries(self, step: int, layer: int) -> np.ndarray:
        """The step's queries of one layer by key/value group, times the layer's scale (one pass
        over A x d numbers instead of over the logits): [A_kv, group, 1, d] float32."""
        lay = self.layout
        q = np.multiply(self.queries.view()[step, layer], np.float32(lay.scale[layer]), dtype=np.float32)
        return q.reshape(lay.num_kv_heads, lay.group, 1, lay.head_dim)

    def _logits(self, q: np.ndarray, keys: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """THE logits call: queries [k, g, 1, d] times keys [k, 1, d, m] -> [k, g, 1, m] float32,
        one matrix-vector product per head. Every read goes through here with the same shapes for
        the same head and query, so BLAS sums each logit the same way whichever call asks (how a
        BLAS orders a sum depends on the shapes it is given). Per head, not per key/value group:
        a matrix of one head then costs one head's products, and all heads' rows at a step read
        the same bytes either way (the keys; a group's second head finds them in the cache)."""
        return np.matmul(q, keys[:, None], out=out)

    def _probabilities(self, layer: int, logits: np.ndarray) -> np.ndarray:
        """Scaled logits [..., m], soft-capped -> softmax over the last axis, in place, float32. The
        row's sum is float64; each step is per row, so a row's numbers do not depend on what else
        the array holds."""
        cap = self.layout.softcap[layer]
        if cap is not None:
            logits /= np.float32(cap)
            np.tanh(logits, out=logits)
            logits *= np.float32(cap)
        logits -= logits.max(axis=-1, keepdims=True)
        np.exp(logits, out=logits)
        total = np.add.reduce(logits, axis=-1, dtype=np.float64, keepdims=True)  # casts in chunks
        np.divide(logits, total, out=logits, casting="unsafe")
        return logits

    @_locked
    def layer_rows(self, step: int, layer: int) -> np.ndarray:
        """Every head's row of the query at `step` in one layer: [A, step+1] float32."""
        out = np.empty((self.layout.num_heads, step + 1), dtype=np.float32)
        self._layer_into(step, layer, out)
        return out

    def _layer_into(self, step: int, layer: int, out: np.ndarray, keys: np.ndarray | None = None) -> None:
        """Every head's row of the query at `step` in one layer, into out [A, step+1] (from the
        layer's keys [A_kv, d, >= step+1] when given, taken from the cache under the lock)."""
        lay = self.layout
        n = step + 1
        lo = self._window(layer, step)
        if keys is None:
            keys = self._layer_keys(layer, n)
        keys = keys[:, :, lo:n]
        logits = out[:, lo:].reshape(lay.num_kv_heads, lay.group, 1, n - lo)  # a view
        self._probabilities(layer, self._logits(self._queries(step, layer), keys, out=logits))
        out[:, :lo] = 0.0

    def _step_rows(self, step: int) -> np.ndarray:
        lay = self.layout
        out = np.empty((lay.num_layers, lay.num_heads, step + 1), dtype=np.float32)
        for layer in range(lay.num_layers):
            self._layer_into(step, layer, out[layer])
        return out

    def rows_at(self, step: int) -> np.ndarray:
        """Every head's row at `step`: [L, A, step+1] float32, read-only. The lock is taken layer by
        layer, so the UI thread's one-head reads wait a layer at most while a worker rebuilds."""
        with self._lock:
            found = self._rows.get(step)
            if found is not None:
                self._rows.move_to_end(step)
                return found
        lay = self.layout
        found = np.empty((lay.num_layers, lay.num_heads, step + 1), dtype=np.float32)
        with self._lock:
            self._fill_all(step + 1)
        for layer in range(lay.num_layers):
            with self._lock:  # only to take the keys: the products run with the lock free
                keys = self._layer_keys(layer, step + 1)
            self._layer_into(step, layer, found[layer], keys)
        found.flags.writeable = False
        with self._lock:
            self._rows[step] = found
            while len(self._rows) > ROW_CACHE_STEPS:
                self._rows.popitem(last=False)
        return found

    def _head_row(self, step: int, layer: int, head: int, keys: np.ndarray, out: np.ndarray) -> None:
        """Write the head's row at `step` into out [step+1] (zeros before the window), from the
        layer's keys [A_kv, d, >= step+1], through the call every read makes."""
        kv, g = divmod(head, self.layout.group)
        lo = self._window(layer, step)
        q = self._queries(step, layer)[kv : kv + 1, g : g + 1]
        logits = self._logits(q, keys[kv : kv + 1, :, lo : step + 1])[0, 0, 0]
        out[:lo] = 0.0
        out[lo:] = self._probabilities(layer, logits)

    def _cached_keys(self, layer: int, n: int) -> np.ndarray:
        """The layer's keys 0..n-1 ([A_kv, d, n]), taken under the lock. The products that read them
        run without it: a buffer's first `filled` keys never change (the cache only writes past
        them, or copies them into a new buffer), so a worker rebuilding a whole matrix never makes
        the UI thread's one-row read wait for it."""
        entry = self._keys32.get(layer)  # one atomic read: (buffer, filled) belong together
        if entry is not None and entry[1] >= n:
            return entry[0][:, :, :n]
        with self._lock:
            return self._layer_keys(layer, n)

    def row(self, step: int, layer: int, head: int) -> np.ndarray:
        cached = self._rows.get(step)
        if cached is not None:
            return cached[layer, head]
        out = np.empty(step + 1, dtype=np.float32)
        self._head_row(step, layer, head, self._cached_keys(layer, step + 1), out)
        return out

    def matrix(self, layer: int, head: int, start: int, stop: int) -> np.ndarray:
        """Queries start..stop-1 of one head over keys 0..stop-1, zero where masked: [stop-start, stop].
        Query by query (each through the call rows_at makes, so its row equals rows_at's)."""
        out = np.zeros((stop - start, stop), dtype=np.float32)
        if stop <= start:
            return out
        keys = self._cached_keys(layer, stop)
        for t in range(start, stop):
            cached = self._rows.get(t)
            if cached is not None:
                out[t - start, : t + 1] = cached[layer, head]
            else:
                self._head_row(t, layer, head, keys, out[t - start, : t + 1])
        return out

    @_locked
    def tensor(self, T: int) -> np.ndarray:
        L, A = self.shape
        dense = np.zeros((L, A, T, T), dtype=np.float32)
        for t in range(T):
            dense[:, :, t, : t + 1] = self._step_rows(t)
        return dense

    @property
    def ram_nbytes(self) -> int:
        """What the store holds in RAM: the caches (q/k themselves are on disk)."""
        # the keys written: a buffer's pages past them are reserved, never touched (see capacity)
        keys = sum(filled for _, filled in self._keys32.values()) * self._key_bytes
        return keys + sum(r.nbytes for r in self._rows.values()) + _ram_of(self.queries) + _ram_of(self.keys)

    @property
    def disk_nbytes(self) -> int:
        return _disk_of(self.queries) + _disk_of(self.keys)


def _ram_of(source) -> int:
    return int(getattr(source, "ram_nbytes", 0))


def _disk_of(source) -> int:
    return int(getattr(source, "disk_nbytes", 0))
