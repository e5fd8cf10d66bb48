"""One head's query x key attention max-pooled to at most screen resolution, built in bounded blocks.

At T = 8192 a head's T x T float32 matrix is 268 MB and rebuilding it from q/k costs O(T^2 d). A view
shows at most about a thousand pixels a side, so it keeps the matrix max-pooled over f x f blocks
(f a power of two, the least that leaves at most `bins` blocks a side): a sharp head (a previous-
token diagonal, an induction stripe) keeps its peak value wherever it is in its block. The max of
maxes is exact, so the pooled matrix grows row by row as a run grows (`PooledHead.extend` pools only
the new rows) and, when T doubles past `bins * f`, is re-pooled 2 x 2 (`_regrid`) without reading
the trace again. Block boundaries sit at multiples of f, so the pooled matrix is exactly the max
over each block of the dense matrix (zero above the diagonal, and past the last query).

A difference of two runs (B - A) is signed: it keeps the max and the min of each block and shows
the one with the larger magnitude (`signed=True`), so a negative difference does not disappear.

Rows come from a `rows(start, stop)` callable answering `Trace.attention_matrix(layer, head, start,
stop)` (queries start..stop-1 over keys 0..stop-1). Qt-free: the panel runs `extend` on a worker
thread for a long trace (`cancelled` stops it between blocks, leaving a consistent, shorter head).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

POOL_BINS = 1024  # blocks a side at most: about a screen's resolution
BLOCK_ENTRIES = 1 << 19  # matrix entries rebuilt at a time (about 5 ms at T = 8192: the UI's lock waits)

Rows = Callable[[int, int], np.ndarray]


def pool_factor(n: int, bins: int = POOL_BINS) -> int:
    """The block side for an n x n matrix: the least power of two f with ceil(n / f) <= bins."""
    f = 1
    while -(-n // f) > bins:
        f *= 2
    return f


def pooled_side(n: int, factor: int) -> int:
    return -(-n // factor)


def _pool_columns(rows: np.ndarray, factor: int, reduce) -> np.ndarray:
    """[m, w] -> [m, ceil(w / factor)]: `reduce` (np.max or np.min) over each run of `factor` keys."""
    m, w = rows.shape
    side = pooled_side(w, factor)
    if side * factor != w:
        padded = np.zeros((m, side * factor), dtype=np.float32)
        padded[:, :w] = rows
        rows = padded
    return reduce(rows.reshape(m, side, factor), axis=2)


class PooledHead:
    """The max-pooled attention of queries 0..done-1 of one head (`grid`: [side, side] at `factor`)."""

    def __init__(self, bins: int = POOL_BINS, signed: bool = False) -> None:
        self.bins = bins
        self.signed = signed
        self.factor = 1
        self.done = 0  # queries pooled
        self._max = np.zeros((0, 0), dtype=np.float32)
        self._min = np.zeros((0, 0), dtype=np.float32) if signed else None
        # what `grid` returns (unsigned): a copy of _max whose first `_valid` rows are known to equal
        # _max's, so a step or a scrub copies the rows that changed only, not the whole grid
        self._shown = np.zeros((0, 0), dtype=np.float32)
        self._valid = 0

    @property
    def side(self) -> int:
        return pooled_side(self.done, self.factor)

    @property
    def nbytes(self) -> int:
        return self._max.nbytes + self._shown.nbytes + (0 if self._min is None else self._min.nbytes)

    def copy(self) -> PooledHead:
        """An independent copy (a worker extends its own; the view keeps drawing the original)."""
        other = PooledHead(self.bins, self.signed)
        other.factor, other.done = self.factor, self.done
        other._max = self._max.copy()
        other._min = None if self._min is None else self._min.copy()
        return other  # its _shown starts empty (copied when first asked)

    # -- growing --------------------------------------------------------------------------------
    def _reserve(self, side: int) -> None:
        have = self._max.shape[0]
        if side <= have:
            return
        capacity = min(self.bins, max(side, 2 * have, 16))
        for name in ("_max", "_min"):
            old = getattr(self, name)
            if old is not None:
                grown = np.zeros((capacity, capacity), dtype=np.float32)
                grown[:have, :have] = old
                setattr(self, name, grown)

    def _regrid(self, factor: int) -> None:
        """Re-pool the blocks already held to a larger `factor` (2 x 2 at a time: exact)."""
        if factor > self.factor:
            self._shown[:] = 0
            self._valid = 0
        if not self.done:
            self.factor = max(self.factor, factor)
            return
        while self.factor < factor:
            side = self.side
            half = pooled_side(side, 2)
            for name, reduce in (("_max", np.max), ("_min", np.min)):
                grid = getattr(self, name)
                if grid is None:
                    continue
                block = np.zeros((2 * half, 2 * half), dtype=np.float32)
                block[:side, :side] = grid[:side, :side]
                grid[:side, :side] = 0
                grid[:half, :half] = reduce(block.reshape(half, 2, half, 2), axis=(1, 3))
            self.factor *= 2

    def add_rows(self, start: int, rows: np.ndarray) -> None:
        """Pool queries start..start+m-1 (`rows` [m, >= start+m]: their attention over keys 0..); they
        must be the next ones (start == done)."""
        if start != self.done:
            raise ValueError(f"rows from {start}: the head has pooled {self.done}")
        m = len(rows)
        if not m:
            return
        stop = start + m
        self._regrid(pool_factor(stop, self.bins))
        f = self.factor
        rows = np.asarray(rows[:, :stop], dtype=np.float32)
        self._reserve(pooled_side(stop, f))
        first, last = start // f, (stop - 1) // f
        self._valid = min(self._valid, first)
        # one segment of rows per block: the first (maybe partial) block, then whole ones
        cuts = np.arange(first, last + 1) * f - start
        cuts[0] = 0
        for name, reduce, ufunc in (("_max", np.max, np.maximum), ("_min", np.min, np.minimum)):
            grid = getattr(self, name)
            if grid is None:
                continue
            pooled = _pool_columns(rows, f, reduce)  # [m, side]
            per_block = ufunc.reduceat(pooled, cuts, axis=0)  # [blocks, side]
            target = grid[first : last + 1, : pooled.shape[1]]
            ufunc(target, per_block, out=target)
        self.done = stop

    def extend(
        self,
        rows: Rows,
        stop: int,
        cancelled: Callable[[], bool] | None = None,
        block_entries: int = BLOCK_ENTRIES,
    ) -> bool:
        """Pool queries done..stop-1, `rows(a, b)` answering queries a..b-1 over keys 0..b-1, in
        blocks of about `block_entries` entries. False if `cancelled()` stopped it first (what was
        pooled stays: the head is consistent, only shorter)."""
        self._regrid(pool_factor(stop, self.bins))  # the final factor first: no re-pooling on the way
        while self.done < stop:
            if cancelled is not None and cancelled():
                return False
            a = self.done
            b = min(stop, a + max(1, block_entries // stop))
            self.add_rows(a, rows(a, b))
        return True

    @classmethod
    def from_dense(cls, matrix: np.ndarray, bins: int = POOL_BINS, signed: bool = False) -> PooledHead:
        """A head pooled from the dense matrix a view already holds (queries 0..n-1 over keys 0..n-1)."""
        head = cls(bins, signed)
        head.add_rows(0, matrix)
        return head

    def _shown_grid(self, n: int, side: int, partial: bool, rows: Rows | None) -> np.ndarray:
        """grid() of an unsigned head: rows from `_valid` on copied into `_shown` (zero past the
        diagonal block everywhere: rows of a block attend to keys up to its end only)."""
        if self._shown.shape[0] < self._max.shape[0]:
            grown = np.zeros(self._max.shape, dtype=np.float32)
            have = min(self._valid, self._shown.shape[0])
            grown[:have, :have] = self._shown[:have, :have]
            self._shown = grown
        valid = min(self._valid, side)
        self._shown[valid:side, :side] = self._max[valid:side, :side]
        self._valid = side
        if partial:
            if rows is None:
                raise ValueError("a stop inside a pooled block needs the rows")
            self._shown[side - 1, :side] = _partial_row(rows, n, self.factor, side, np.max)
            self._valid = side - 1
        return self._shown[:side, :side]

    # -- reading --------------------------------------------------------------------------------
    def grid(self, stop: int | None = None, rows: Rows | None = None) -> np.ndarray:
        """The pooled matrix of queries 0..stop-1 over keys 0..stop-1 ([ceil(stop/f)]^2) at this head's
        factor; a view of the head's own buffer, valid until its next call (do not write to it). A
        stop inside the last block pooled needs `rows` to pool that block's first rows again (at most
        f - 1 queries); keys past stop are zero there already (causal)."""
        n = self.done if stop is None else stop
        if n > self.done:
            raise ValueError(f"queries up to {n}: the head has pooled {self.done}")
        f = self.factor
        side = pooled_side(n, f)
        partial = bool(n % f) and n < self.done
        if self._min is None:
            return self._shown_grid(n, side, partial, rows)
        out = self._max[:side, :side].copy()
        low = None if self._min is None else self._min[:side, :side].copy()
        if partial:
            if rows is None:
                raise ValueError("a stop inside a pooled block needs the rows")
            out[side - 1] = _partial_row(rows, n, f, side, np.max)
            if low is not None:
                low[side - 1] = _partial_row(rows, n, f, side, np.min)
        if low is not None:
            out = np.where(out >= -low, out, low)  # the signed value of larger magnitude
        return out


def _partial_row(rows: Rows, n: int, f: int, side: int, reduce) -> np.ndarray:
    """The pooled row of the block holding query n-1, from its queries before n only."""
    a = (n // f) * f
    part = np.asarray(rows(a, n), dtype=np.float32)
    return reduce(_pool_columns(part, f, reduce), axis=0)[:side]


def pooled_matrix(
    rows: Rows, stop: int, bins: int = POOL_BINS, signed: bool = False, block_entries: int = BLOCK_ENTRIES
) -> tuple[np.ndarray, int]:
    """(pooled matrix, factor) of queries 0..stop-1 from scratch (what the export and tests use)."""
    head = PooledHead(bins, signed)
    head.extend(rows, stop, block_entries=block_entries)
    return head.grid(stop), head.factor


def tile_rows(
    rows: Rows,
    r0: int,
    r1: int,
    c0: int,
    c1: int,
    cancelled: Callable[[], bool] | None = None,
    block_entries: int = BLOCK_ENTRIES,
) -> np.ndarray | None:
    """Exact attention of queries r0..r1-1 over keys c0..c1-1 ([r1-r0, c1-c0] float32; keys past a
    query are zero), in bounded blocks; None if `cancelled()` stopped it."""
    out = np.zeros((max(0, r1 - r0), max(0, c1 - c0)), dtype=np.float32)
    a = r0
    while a < r1:
        if cancelled is not None and cancelled():
            return None
        b = min(r1, a + max(1, block_entries // max(r1, 1)))
        block = rows(a, b)
        w = min(c1, b) - c0
        if w > 0:
            out[a - r0 : b - r0, :w] = block[:, c0 : c0 + w]
        a = b
    return out
