"""A per-step numpy column: appends O(1), `view()` a zero-copy [T, ...] view.

Held one of three ways:
- in RAM, grown by doubling (a trace built in a test, a column before its run spools);
- on disk, in a spool `.npy` file (memviz.core.npy_spool) that a run appends to as it goes: RAM
  does not grow with the run, the view is a memory map, and a crash leaves the rows behind;
- frozen: an array handed over as it is (a loaded or recovered trace's column, often a memory
  map), copied into RAM or a spool only when something appends to it.
"""

from __future__ import annotations

import os

import numpy as np

from memviz.core.npy_spool import NpySpool


class GrowableArray:
    def __init__(self, row_shape: tuple[int, ...], dtype, capacity: int = 64) -> None:
        self._data = np.zeros((capacity, *row_shape), dtype=dtype)
        self._size = 0
        self._frozen = False  # _data is someone else's array: copy before writing
        self._spool: NpySpool | None = None

    @classmethod
    def from_array(cls, array: np.ndarray) -> GrowableArray:
        """The column of `array`'s rows, without a copy (it is copied when the column grows)."""
        column = cls.__new__(cls)
        column._data = array
        column._size = len(array)
        column._frozen = True
        column._spool = None
        return column

    @classmethod
    def spooled(cls, path: str | os.PathLike, row_shape: tuple[int, ...], dtype) -> GrowableArray:
        """An empty column that appends to a new spool file at `path`."""
        column = cls((), dtype, capacity=0)
        column._spool = NpySpool(path, row_shape, dtype)
        return column

    def spool_to(self, path: str | os.PathLike) -> None:
        """From now on append to a spool file at `path`, with the rows held so far written first."""
        if self._spool is not None:
            return
        rows = self.view()
        spool = NpySpool(path, rows.shape[1:], rows.dtype)
        spool.extend(rows)
        self._spool, self._data, self._size, self._frozen = spool, self._data[:0], 0, False

    @property
    def path(self):
        """The spool file this column appends to (None: RAM or frozen)."""
        return None if self._spool is None else self._spool.path

    def _thaw(self, capacity: int) -> None:
        grown = np.zeros((max(64, capacity), *self._data.shape[1:]), dtype=self._data.dtype)
        grown[: self._size] = self._data[: self._size]
        self._data, self._frozen = grown, False

    def append(self, row) -> None:
        if self._spool is not None:
            self._spool.append(row)
            return
        if self._frozen or self._size == len(self._data):
            self._thaw(2 * max(1, self._size))
        self._data[self._size] = row
        self._size += 1  # after the write: a reader on another thread never sees a half row

    def write(self, step: int, value) -> None:
        """Rewrite row `step` (already appended) in place."""
        if self._spool is not None:
            self._spool.write(step, value)
            return
        if not 0 <= step < self._size:
            raise IndexError(f"row {step} is not written ({self._size} rows)")
        if self._frozen:
            self._thaw(self._size)
        self._data[step] = value

    def truncate(self, rows: int) -> None:
        """Forget rows from `rows` on (a step that could not be written whole)."""
        if self._spool is not None:
            self._spool.truncate(rows)
        else:
            self._size = min(self._size, rows)

    def view(self) -> np.ndarray:
        if self._spool is not None:
            return self._spool.view()
        return self._data[: self._size]

    def __len__(self) -> int:
        return len(self._spool) if self._spool is not None else self._size

    @property
    def nbytes(self) -> int:
        """Bytes held in RAM (a spooled or memory-mapped column: none; the page cache is the OS's)."""
        if self._spool is not None or isinstance(self._data, np.memmap):
            return 0
        return self._data.nbytes

    @property
    def disk_nbytes(self) -> int:
        if self._spool is not None:
            return self._spool.disk_nbytes
        return self._data.nbytes if isinstance(self._data, np.memmap) else 0
