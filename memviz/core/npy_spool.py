"""A `.npy` file grown in chunks while a run goes on: appends go to disk, reads are a memory map.

The file is a valid `.npy` after every append: its header (a fixed 256 bytes, rewritten in place)
declares the rows written so far, and the space after them is preallocated a chunk at a time, so
`numpy.load(path)` (or `mmap_mode="r"`) reads what the run had read when it stopped, crash or not.
RAM stays bounded by the page cache, not by the run's length.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

HEADER_BYTES = 256  # magic (6) + version (2) + length (2) + the dict, padded with spaces
CHUNK_BYTES = 8 * 2**20  # disk space reserved at a time


def npy_header(shape: tuple[int, ...], dtype) -> bytes:
    """A version 1.0 .npy header of exactly HEADER_BYTES declaring `shape` and `dtype`."""
    text = repr({"descr": npformat.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
    body_len = HEADER_BYTES - 10
    if len(text) + 1 > body_len:
        raise ValueError(f"shape {shape} does not fit a {HEADER_BYTES}-byte header")
    body = text.ljust(body_len - 1) + "\n"
    return npformat.MAGIC_PREFIX + b"\x01\x00" + body_len.to_bytes(2, "little") + body.encode("latin1")


class NpySpool:
    """An append-only [T, *row_shape] array in a .npy file at `path` (created, or replaced)."""

    def __init__(self, path: str | os.PathLike, row_shape: tuple[int, ...], dtype) -> None:
        self.path = Path(path)
        self.row_shape = tuple(int(n) for n in row_shape)
        self.dtype = np.dtype(dtype)
        self._row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self._chunk_rows = max(16, CHUNK_BYTES // max(1, self._row_bytes))
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._close = weakref.finalize(self, os.close, self._fd)  # the descriptor goes with the spool
        self._size = 0
        self._capacity = 0
        self._map: np.ndarray | None = None
        os.pwrite(self._fd, npy_header((0, *self.row_shape), self.dtype), 0)

    def append(self, row) -> None:
        data = np.ascontiguousarray(row, dtype=self.dtype)
        if data.shape != self.row_shape:
            raise ValueError(f"row of shape {data.shape}, expected {self.row_shape}")
        if self._size == self._capacity:  # the file first: a reader maps at most what is there
            os.ftruncate(self._fd, HEADER_BYTES + (self._capacity + self._chunk_rows) * self._row_bytes)
            self._capacity += self._chunk_rows
        os.pwrite(self._fd, data.tobytes(), HEADER_BYTES + self._size * self._row_bytes)
        self._size += 1
        # the header last: a reader (or a crash) never sees a row that is not all there
        os.pwrite(self._fd, npy_header((self._size, *self.row_shape), self.dtype), 0)

    def extend(self, rows: np.ndarray) -> None:
        for row in rows:
            self.append(row)

    def view(self) -> np.ndarray:
        """Rows 0..len-1, read-only, from a memory map of the file (remapped when it has grown)."""
        if self._size == 0:
            return np.zeros((0, *self.row_shape), dtype=self.dtype)
        if self._map is None or len(self._map) < self._size:
            self._map = np.memmap(
                self.path,
                dtype=self.dtype,
                mode="r",
                offset=HEADER_BYTES,
                shape=(self._capacity, *self.row_shape),
            )
        return self._map[: self._size]

    def __len__(self) -> int:
        return self._size

    @property
    def disk_nbytes(self) -> int:
        return HEADER_BYTES + self._size * self._row_bytes  # written (the reserve is sparse)

    def close(self) -> None:
        """No more appends (reads go on through the memory map)."""
        self._close()
        self._fd = -1


class FrozenRows:
    """A read-only [T, ...] array (a memory map of a saved trace's member, or an array in RAM) with
    the face of a spool: `view()`, `len()`. A Trace that goes on growing copies it into a spool."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.dtype = array.dtype
        self.row_shape = tuple(array.shape[1:])

    def view(self) -> np.ndarray:
        return self.array

    def __len__(self) -> int:
        return len(self.array)

    @property
    def ram_nbytes(self) -> int:
        return 0 if isinstance(self.array, np.memmap) else int(self.array.nbytes)

    @property
    def disk_nbytes(self) -> int:
        return int(self.array.nbytes) if isinstance(self.array, np.memmap) else 0
