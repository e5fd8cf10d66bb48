"""The query x key matrices a view redraws while a run grows, kept so that a step costs one new row.

Rebuilding a head's T x T matrix at each step cost milliseconds at T = 1024. The cache keeps each
head it has shown in a buffer with room to grow (capacity doubles) and asks the Trace only for the
rows it does not have yet (`Trace.attention_matrix(layer, head, start, stop)`), however the trace
stores attention. Rows of earlier steps never change: a trace only grows.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from memviz.core.trace import Trace

HEADS_KEPT = 4  # heads kept at once (4 MB each at T = 1024): switching back and forth stays cheap


class AttentionCache:
    """Query x key matrices of one trace, per (layer, head); forget it (make a new one) with a new trace."""

    def __init__(self, heads_kept: int = HEADS_KEPT) -> None:
        self.heads_kept = heads_kept
        self._kept: OrderedDict[tuple[int, int], tuple[np.ndarray, int]] = OrderedDict()  # (buffer, rows)

    def __len__(self) -> int:
        """Heads kept now."""
        return len(self._kept)

    def held(self, layer: int, head: int) -> int:
        """Rows of (layer, head) kept now (0: none)."""
        found = self._kept.get((layer, head))
        return found[1] if found is not None else 0

    def matrix(self, trace: Trace, layer: int, head: int, stop: int | None = None) -> np.ndarray:
        """Equal to trace.attention_matrix(layer, head, stop=stop): [n, n] float32, a view of the cache."""
        n = len(trace) if stop is None else max(0, min(stop, len(trace)))
        return self._grow(layer, head, n, lambda a, b: trace.attention_matrix(layer, head, start=a, stop=b))

    def put(self, layer: int, head: int, start: int, rows: np.ndarray) -> bool:
        """Keep rows start..start+m-1 ([m, start+m], rebuilt elsewhere: the panel's worker) when they
        are the next ones of (layer, head); False (nothing kept) otherwise."""
        if start != self.held(layer, head):
            return False
        self._grow(layer, head, start + len(rows), lambda a, b: rows[a - start : b - start, :b])
        return True

    def _grow(self, layer: int, head: int, n: int, rows) -> np.ndarray:
        key = (layer, head)
        buffer, filled = self._kept.pop(key, (None, 0))
        if buffer is None or len(buffer) < n:
            capacity = 1 << max(n - 1, 63).bit_length()  # a power of two: few regrowths in a long run
            grown = np.zeros((capacity, capacity), dtype=np.float32)
            if buffer is not None:
                grown[:filled, :filled] = buffer[:filled, :filled]
            buffer = grown
        if filled < n:
            buffer[filled:n, :n] = rows(filled, n)
            filled = n
        self._kept[key] = (buffer, filled)
        while len(self._kept) > self.heads_kept:
            self._kept.popitem(last=False)
        return buffer[:n, :n]
