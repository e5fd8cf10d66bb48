"""Pooled overviews of a long run: a series over steps, x[t, rows], in bins of 2**k steps.

A units x steps heatmap of a run of 50,000 steps has 100 steps to a pixel: colouring (and keeping)
every cell cost tens of milliseconds a step and most of the app's memory. The panels draw instead
at most CAP columns: the whole run 0..t as before, each column a bin of `bin_size(t + 1)` steps
(a power of two), the last one the partial bin up to the cursor.

`StepPool` keeps, per level k, the reductions (mean, min, max) of the first bins of 2**k steps, at
most CAP bins a level (so about CAP x rows numbers a level, whatever T). A level is built from the
level below (pairs of its bins) where that has them and from the series for the rest, and only
extended: a new step reads the new step; a scrub to another level reads nothing but the partial
bin once its levels exist. `RetentionPool` does the same for the span panel's retention
prod_{r=s+1..t} f_r, whose every column changes at every step: its bins keep what makes their mean
for any later t a multiplication (see there).

The series are read through `read(lo, hi)` (a slice of `trace.array(key)`): nothing here holds
the trace's columns, which may live on disk.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CAP = 1024  # at most this many bins (columns) a level: the widest heatmap is about that many pixels
Reader = Callable[[int, int], np.ndarray]  # read(lo, hi) -> [hi - lo, rows]


def bin_size(n: int, cap: int = CAP) -> int:
    """The smallest power of two b with ceil(n / b) <= cap (1 up to cap steps)."""
    b = 1
    while -(-n // b) > cap:
        b *= 2
    return b


def reference_pool(x: np.ndarray, b: int, stat: str = "mean") -> np.ndarray:
    """What StepPool gives, in float64 the plain way: x [n, rows] reduced over bins of b steps (the
    last bin partial). For tests and tools."""
    n = len(x)
    parts = [x[i : i + b].astype(np.float64) for i in range(0, n, b)]
    reduce = {"mean": np.mean, "min": np.min, "max": np.max}[stat]
    return np.stack([reduce(part, axis=0) for part in parts]) if parts else np.zeros((0,) + x.shape[1:])


class LevelPool:
    """What StepPool and RetentionPool share: levels k of complete bins of 2**k steps (`done[k]`
    bins each), built by the subclass' `_extend(k, need)`."""

    cap: int
    done: dict[int, int]

    def _extend(self, k: int, need: int) -> None:
        raise NotImplementedError

    def prepare(self, n: int) -> None:
        """The complete bins `pooled(n)` reads (the long part of a first read; a worker may do it)."""
        b = bin_size(n, self.cap)
        self._extend(b.bit_length() - 1, n // b)

    def missing(self, n: int) -> int:
        """About how many steps `pooled(n)` would still read: those past what the most complete
        level holds."""
        covered = max((bins << k for k, bins in self.done.items()), default=0)
        return max(n - covered, 0)


class StepPool(LevelPool):
    """Mean, min or max of x[t, rows] over bins of 2**k steps, level by level (see the module)."""

    MERGE = {"sum": np.add, "min": np.minimum, "max": np.maximum}
    REDUCE = {"sum": np.sum, "min": np.min, "max": np.max}

    def __init__(self, read: Reader, rows: int, stats: tuple[str, ...] = ("sum",), cap: int = CAP) -> None:
        self.read = read
        self.rows = rows
        self.stats = stats
        self.cap = cap
        self.levels: dict[int, dict[str, np.ndarray]] = {}  # k -> stat -> [cap, rows] (float32)
        self.done: dict[int, int] = {}  # k -> complete bins held
        # stat -> (k, complete bins filled, [cap + 1, rows]): the last overview handed out, whose
        # complete bins a next call at the same level does not copy (nor divide) again
        self.shown: dict[str, tuple[int, int, np.ndarray]] = {}

    def nbytes(self) -> int:
        return sum(a.nbytes for level in self.levels.values() for a in level.values())

    def _level(self, k: int) -> dict[str, np.ndarray]:
        level = self.levels.get(k)
        if level is None:
            level = self.levels[k] = {s: np.zeros((self.cap, self.rows), np.float32) for s in self.stats}
        return level

    def _extend(self, k: int, need: int) -> None:
        """Complete bins 0..need-1 of level k (need <= cap)."""
        have = self.done.get(k, 0)
        if have >= need:
            return
        level, b, i = self._level(k), 1 << k, have
        if k > 0:  # from the level below, two of its bins each (it is built first: a scrub finds it)
            self._extend(k - 1, min(2 * need, self.cap))
            j = min(need, self.done[k - 1] // 2)
            if j > i:
                fine = self.levels[k - 1]
                for stat in self.stats:
                    pairs = fine[stat][2 * i : 2 * j].reshape(j - i, 2, self.rows)
                    self.MERGE[stat](pairs[:, 0], pairs[:, 1], out=level[stat][i:j])
                i = j
        if i < need:  # the rest from the series itself
            x = np.asarray(self.read(i * b, need * b), dtype=np.float32).reshape(need - i, b, self.rows)
            for stat in self.stats:
                level[stat][i:need] = self.REDUCE[stat](x, axis=1)
        self.done[k] = need

    def pooled(self, n: int, stat: str = "sum") -> tuple[np.ndarray, int]:
        """(values [ceil(n / b), rows], b): steps 0..n-1 in bins of b = bin_size(n) steps, the last
        partial. stat "sum" gives the bins' means. The array is the pool's own, written again by
        the next call (a heatmap shows one at a time)."""
        b = bin_size(n, self.cap)
        k, full = b.bit_length() - 1, n // b
        self._extend(k, full)
        cols = -(-n // b)
        level, filled, out = self.shown.get(stat, (-1, 0, None))
        if level != k or out is None:
            out, filled = np.empty((self.cap + 1, self.rows), np.float32), 0
        if filled < full:  # complete bins never change: only the ones not yet in `out`
            out[filled:full] = self.levels[k][stat][filled:full]
            if stat == "sum" and b > 1:
                out[filled:full] /= b
        # the partial bin is written over row `full`: from there on the rows are not complete bins
        self.shown[stat] = (k, full if cols > full else max(filled, full), out)
        out = out[:cols]
        if cols > full:
            rest = np.asarray(self.read(full * b, n), dtype=np.float32)
            out[full] = rest.mean(axis=0) if stat == "sum" else self.REDUCE[stat](rest, axis=0)
        return out, b


def log_kept(f: np.ndarray) -> np.ndarray:
    """log f in float64, f clipped to [1e-300, 1] (a forget gate of exactly 0 forgets all)."""
    return np.log(np.clip(np.asarray(f, dtype=np.float64), 1e-300, 1.0))


class RetentionPool(LevelPool):
    """The span panel's retention R_t[u, s] = prod_{r=s+1..t} f_r[u], pooled over bins of s.

    With S_s = sum_{r<=s} log f_r (non-increasing), R_t[u, s] = exp(S_t - S_s). A bin j of steps
    s in [j b, (j+1) b) keeps E_j = S at its last step e_j, Q_j = sum_{s in j} exp(E_j - S_s) (each
    term <= 1: no overflow however long the run) and K_j = sum_{s <= e_j} exp(E_j - S_s), the memory
    length at e_j. For any t past the bin the mean of R_t over it is exp(S_t - E_j) Q_j / b (one
    multiplication a bin, not one a step), and the memory length at t is exp(S_t - E_j) K_j for the
    last complete bin j plus the partial bin's own terms. Two bins merge into one: E = E_1,
    Q = Q_1 + Q_0 exp(E_1 - E_0), K = K_1. Float64, but for the overview's means past CAP steps
    (float32: a picture; the hover gives `exact`).
    """

    def __init__(self, read_f: Reader, rows: int, cap: int = CAP) -> None:
        self.read_f = read_f  # read_f(lo, hi) -> f [hi - lo, rows]
        self.rows = rows
        self.cap = cap
        self.levels: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # k -> E, Q, K [cap, rows]
        self.done: dict[int, int] = {}
        # (n, [rows, cap + 1]): the last R_t handed out one step a column, which the next step's
        # multiplies (its columns are written again by the next call)
        self._shown_retention: tuple[int, np.ndarray | None] = (0, None)

    def nbytes(self) -> int:
        return sum(a.nbytes for level in self.levels.values() for a in level)

    def _level(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        level = self.levels.get(k)
        if level is None:
            shape = (self.cap, self.rows)
            level = self.levels[k] = (np.zeros(shape), np.zeros(shape), np.zeros(shape))
        return level

    def _s_before(self, k: int, j: int) -> np.ndarray:
        """S at the step before bin j of level k (0 before step 0); bins < j are complete."""
        return self.levels[k][0][j - 1] if j > 0 else np.zeros(self.rows)

    def _extend(self, k: int, need: int) -> None:
        have = self.done.get(k, 0)
        if have >= need:
            return
        (E, Q, K), b, i = self._level(k), 1 << k, have
        if k > 0:
            self._extend(k - 1, min(2 * need, self.cap))
            j = min(need, self.done[k - 1] // 2)
            if j > i:
                fine_e, fine_q, fine_k = self.levels[k - 1]
                e0, e1 = fine_e[2 * i : 2 * j : 2], fine_e[2 * i + 1 : 2 * j : 2]
                E[i:j] = e1
                Q[i:j] = fine_q[2 * i + 1 : 2 * j : 2] + fine_q[2 * i : 2 * j : 2] * np.exp(e1 - e0)
                K[i:j] = fine_k[2 * i + 1 : 2 * j : 2]
                i = j
        if i < need:
            s = self._s_before(k, i) + np.cumsum(log_kept(self.read_f(i * b, need * b)), axis=0)
            s = s.reshape(need - i, b, self.rows)
            E[i:need] = s[:, -1]
            Q[i:need] = np.exp(s[:, -1:] - s).sum(axis=1) if b > 1 else 1.0
            kept, end = (K[i - 1], E[i - 1]) if i > 0 else (np.zeros(self.rows), np.zeros(self.rows))
            for j in range(i, need):  # K_j = exp(E_j - E_{j-1}) K_{j-1} + Q_j
                kept = np.exp(E[j] - end) * kept + Q[j]
                K[j], end = kept, E[j]
        self.done[k] = need

    def _partial(self, k: int, full: int, n: int) -> np.ndarray:
        """S at steps full*b .. n-1 (the partial bin), [n - full*b, rows]."""
        b = 1 << k
        return self._s_before(k, full) + np.cumsum(log_kept(self.read_f(full * b, n)), axis=0)

    def pooled(self, n: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(means [rows, cols], memory length [rows], b) at t = n - 1: R_t over bins of b steps of
        s in 0..t, and sum_s R_t[u, s] (float64)."""
        b = bin_size(n, self.cap)
        k, full = b.bit_length() - 1, n // b
        self._extend(k, full)
        E, Q, K = self.levels[k]
        partial = self._partial(k, full, n) if n > full * b else np.zeros((0, self.rows))
        s_t = partial[-1] if len(partial) else self._s_before(k, full)
        rest = np.exp(s_t[:, None] - partial.T)  # [rows, partial steps]: R_t there
        span = rest.sum(axis=1)
        if full:
            span += np.exp(s_t - E[full - 1]) * K[full - 1]
        if b == 1:  # one step a column: R_t itself, in float64
            return self._retention(n, s_t, E), span, b
        exponent = s_t[:, None] - E[:full].T
        # float32 exponentials, six times as fast: what a bin's colour needs
        means = np.empty((self.rows, -(-n // b)), np.float32)
        np.exp(exponent.astype(np.float32), out=means[:, :full])
        means[:, :full] *= Q[:full].T / b
        if len(partial):
            means[:, full] = rest.mean(axis=1)
        return means, span, b

    def _retention(self, n: int, s_t: np.ndarray, E: np.ndarray) -> np.ndarray:
        """R_t [rows, n] at t = n - 1, one step a column (n <= cap), float64. The step after the
        last one asked for multiplies the kept columns by its f and adds a column of ones (R_t[u,
        s] = R_{t-1}[u, s] f_t[u]): rows x n multiplications instead of as many exponentials (about
        a tenth of the time; 512 x 1,024 exponentials cost 6-15 ms). Any other move: exp(S_t - S_s)."""
        shown, buffer = self._shown_retention
        if buffer is not None and shown == n:  # drawn again at the same step
            return buffer[:, :n]
        if buffer is not None and shown == n - 1 and n > 1 and buffer.shape[1] >= n:
            f = np.clip(np.asarray(self.read_f(n - 1, n), dtype=np.float64)[0], 1e-300, 1.0)
            buffer[:, : n - 1] *= f[:, None]
            buffer[:, n - 1] = 1.0
        else:
            if buffer is None or buffer.shape[1] < n:
                buffer = np.empty((self.rows, self.cap + 1))
            np.exp(s_t[:, None] - E[:n].T, out=buffer[:, :n])
        self._shown_retention = (n, buffer)
        return buffer[:, :n]

    def exact(self, unit: int, s: int, t: int) -> float:
        """R_t[unit, s] = prod_{r=s+1..t} f_r[unit], from the bins' S and at most two bins of f."""
        if s >= t:
            return 1.0
        return float(np.exp(self._s_at(unit, t) - self._s_at(unit, s)))

    def _s_at(self, unit: int, s: int) -> float:
        b = bin_size(s + 1, self.cap)
        k, j = b.bit_length() - 1, s // b
        self._extend(k, j)
        before = self.levels[k][0][j - 1, unit] if j > 0 else 0.0
        return float(before + log_kept(self.read_f(j * b, s + 1)[:, unit]).sum())
