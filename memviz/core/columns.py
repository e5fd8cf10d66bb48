"""An append-only numpy column that grows by doubling: O(1) appends, zero-copy views."""

from __future__ import annotations

import numpy as np


class GrowableArray:
    def __init__(self, row_shape: tuple[int, ...], dtype, capacity: int = 64) -> None:
        self._data = np.zeros((capacity, *row_shape), dtype=dtype)
        self._size = 0

    @classmethod
    def from_array(cls, array: np.ndarray) -> GrowableArray:
        column = cls(array.shape[1:], array.dtype, capacity=max(64, len(array)))
        column._data[: len(array)] = array
        column._size = len(array)
        return column

    def append(self, row) -> None:
        if self._size == len(self._data):
            grown = np.zeros((2 * len(self._data), *self._data.shape[1:]), dtype=self._data.dtype)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size] = row
        self._size += 1  # after the write: a reader on another thread never sees a half row

    def view(self) -> np.ndarray:
        return self._data[: self._size]

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        return self._data.nbytes
