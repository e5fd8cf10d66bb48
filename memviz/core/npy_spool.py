"""A `.npy` file grown in chunks while a run goes on: appends go to disk, reads are a memory map.

The file is a valid `.npy` after every append: its header (a fixed 256 bytes, rewritten in place,
the row count in a fixed-width field so only its digits change) declares the rows written so far,
and the space after them is reserved a chunk at a time (sparse), so `numpy.load(path)` (or
`mmap_mode="r"`) reads what the run had read when it stopped, crash or not. Rows are written with
`pwrite`, one call each, the header after the row: a reader on another thread, or what a SIGKILL
leaves, never sees a row that is not all there. A written row can be rewritten in place (`write`:
values that come one step late). RAM stays bounded by the page cache, not by the run's length.

A process may hold many spools (a dozen columns per trace, several traces): the descriptors they
write through are kept open in a small shared cache (the least recently used closed first), not
one each for the spool's life.
"""

from __future__ import annotations

import errno
import os
import threading
import weakref
from collections import OrderedDict
from itertools import count
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

HEADER_BYTES = 256  # magic (6) + version (2) + length (2) + the dict, padded with spaces
CHUNK_BYTES = 8 * 2**20  # disk space reserved at a time, at most (sparse: nothing written yet)
FIRST_CHUNK_BYTES = 64 * 2**10  # the first reservation; each next one doubles, up to CHUNK_BYTES
ROWS_WIDTH = 20  # characters of the header's row count (any int64 fits)
_ROWS_MARK = 987654321987654321  # a placeholder that is found once in a header and replaced


def npy_header(shape: tuple[int, ...], dtype) -> bytes:
    """A version 1.0 .npy header of exactly HEADER_BYTES declaring `shape` and `dtype` (the first
    dimension right-aligned in ROWS_WIDTH characters: numpy reads the spaces as it reads any)."""
    rows, *rest = shape
    text = repr(
        {
            "descr": npformat.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": (_ROWS_MARK, *rest),
        }
    )
    text = text.replace(str(_ROWS_MARK), f"{int(rows):>{ROWS_WIDTH}}", 1)
    body_len = HEADER_BYTES - 10
    if len(text) + 1 > body_len:
        raise ValueError(f"shape {shape} does not fit a {HEADER_BYTES}-byte header")
    body = text.ljust(body_len - 1) + "\n"
    return npformat.MAGIC_PREFIX + b"\x01\x00" + body_len.to_bytes(2, "little") + body.encode("latin1")


class _Descriptors:
    """Write descriptors of the live spools, at most LIMIT open at once (reopened when needed)."""

    LIMIT = 64

    def __init__(self) -> None:
        self._open: OrderedDict[int, int] = OrderedDict()
        self._lock = threading.Lock()
        self._last: int | None = None

    def _fd(self, key: int, path: Path) -> int:
        fd = self._open.get(key)
        if fd is not None and key == self._last:
            return fd  # the same spool again: already the most recent
        self._last = key
        if fd is None:
            while len(self._open) >= self.LIMIT:
                os.close(self._open.popitem(last=False)[1])
            fd = self._open[key] = os.open(path, os.O_RDWR)
        else:
            self._open.move_to_end(key)
        return fd

    def pwrite(self, key: int, path: Path, data: bytes, offset: int) -> None:
        with self._lock:
            fd = self._fd(key, path)
            written = os.pwrite(fd, data, offset)
            if written == len(data):
                return
            view = memoryview(data)  # a regular file takes it all at once, but a short write is legal
            while written < len(view):
                more = os.pwrite(fd, view[written:], offset + written)
                if more <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += more

    def truncate(self, key: int, path: Path, size: int) -> None:
        with self._lock:
            os.ftruncate(self._fd(key, path), size)

    def forget(self, key: int) -> None:
        with self._lock:
            fd = self._open.pop(key, None)
            self._last = None
        if fd is not None:
            os.close(fd)


_DESCRIPTORS = _Descriptors()


def _more_open_files() -> None:
    """Let this process open more files than a desktop's default soft limit (1024; 256 on macOS),
    up to its hard limit: every spool's memory map holds a descriptor (Python's mmap keeps a
    duplicate), and a run has a dozen columns, an app or a test several runs."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        for want in (65536, 10240):  # macOS refuses more than OPEN_MAX (10240)
            want = want if hard == resource.RLIM_INFINITY else min(hard, want)
            if soft == resource.RLIM_INFINITY or soft >= want:
                return
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
                return
            except (ValueError, OSError):
                continue
    except ImportError:  # not POSIX
        pass


_more_open_files()
_KEYS = count()  # each writer's key in the descriptor cache


class NpySpool:
    """An append-only [T, *row_shape] array in a .npy file at `path` (created, or replaced)."""

    def __init__(self, path: str | os.PathLike, row_shape: tuple[int, ...], dtype) -> None:
        self.path = Path(path)
        self.row_shape = tuple(int(n) for n in row_shape)
        self.dtype = np.dtype(dtype)
        self._row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self._key = next(_KEYS)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.pwrite(fd, npy_header((0, *self.row_shape), self.dtype), 0)
        finally:
            os.close(fd)
        self._close = weakref.finalize(self, _DESCRIPTORS.forget, self._key)
        self._size = 0
        self._capacity = 0
        self._map: np.ndarray | None = None
        # where the row count's field is: the header of 0 rows holds it once, right-aligned
        self._rows_at = npy_header((0, *self.row_shape), self.dtype).index(b" " * (ROWS_WIDTH - 1) + b"0")

    def _write(self, data, offset: int) -> None:
        _DESCRIPTORS.pwrite(self._key, self.path, data, offset)

    def _write_header(self) -> None:
        # only the row count's digits change: one short pwrite, after the rows it declares (a
        # system call, not a store into a map: a map holds a descriptor, and a full disk is then
        # an error, not a SIGBUS)
        self._write(f"{self._size:>{ROWS_WIDTH}}".encode("ascii"), self._rows_at)

    def _reserve(self, rows: int) -> None:
        """Room for `rows` rows: the file first, so a reader maps at most what is there."""
        if rows <= self._capacity:
            return
        step = min(CHUNK_BYTES, max(FIRST_CHUNK_BYTES, self._capacity * self._row_bytes))
        capacity = max(rows, self._capacity + max(16, step // max(1, self._row_bytes)))
        _DESCRIPTORS.truncate(self._key, self.path, HEADER_BYTES + capacity * self._row_bytes)
        self._capacity = capacity

    def append(self, row) -> None:
        data = np.ascontiguousarray(row, dtype=self.dtype)
        if data.shape != self.row_shape:  # what numpy's item assignment takes (a [1] into a scalar)
            data = self._as_row(data)
        self._reserve(self._size + 1)
        if self._row_bytes:  # a row of no numbers (a classifier's [0] candidates) has no bytes
            self._write(memoryview(data).cast("B"), HEADER_BYTES + self._size * self._row_bytes)
        self._size += 1  # after the write: a reader on another thread never sees a half row
        # the header last: a reader (or a crash) never sees a row that is not all there
        self._write_header()

    def _as_row(self, value) -> np.ndarray:
        row = np.empty(self.row_shape, dtype=self.dtype)
        try:
            row[...] = value
        except ValueError:
            raise ValueError(f"row of shape {np.shape(value)}, expected {self.row_shape}") from None
        return row

    def extend(self, rows) -> None:
        """Append rows [n, *row_shape] in one write."""
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        if data.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {data.shape[1:]}, expected {self.row_shape}")
        if not len(data):
            return
        self._reserve(self._size + len(data))
        if self._row_bytes:
            self._write(memoryview(data).cast("B"), HEADER_BYTES + self._size * self._row_bytes)
        self._size += len(data)
        self._write_header()

    def write(self, step: int, value) -> None:
        """Rewrite row `step` (already appended) in place; the header is untouched."""
        if not 0 <= step < self._size:
            raise IndexError(f"row {step} is not written ({self._size} rows)")
        if self._row_bytes:
            self._write(self._as_row(value).tobytes(), HEADER_BYTES + step * self._row_bytes)

    def truncate(self, rows: int) -> None:
        """Forget rows from `rows` on (a step that could not be written whole); the header says so."""
        if rows < self._size:
            self._size = rows
            try:
                self._write_header()
            except OSError:  # the disk that refused the row may refuse this too; the header then
                pass  # declares a row more, which a run's tokens file (what says a step is whole) does not

    def view(self) -> np.ndarray:
        """Rows 0..len-1, read-only, from a memory map of the file (remapped when it has grown)."""
        n = self._size  # first: the map is replaced before the size passes its capacity
        if n == 0 or not self._row_bytes:  # nothing to map
            return np.zeros((n, *self.row_shape), dtype=self.dtype)
        mapped = self._map
        if mapped is None or len(mapped) < n:
            mapped = self._map = np.memmap(
                self.path,
                dtype=self.dtype,
                mode="r",
                offset=HEADER_BYTES,
                shape=(self._capacity, *self.row_shape),
            ).view(np.ndarray)  # a plain array to readers (the map lives on as its base)
        return mapped[:n]

    def __len__(self) -> int:
        return self._size

    @property
    def disk_nbytes(self) -> int:
        return HEADER_BYTES + self._size * self._row_bytes  # written (the reserve is sparse)

    def close(self) -> None:
        """No more appends for a while (reads go on through the memory map; an append reopens)."""
        self._close()


def read_spool(path: Path, rows: int | None = None, where: str = "") -> np.ndarray:
    """A spool file left by a run (crashed or not) as a read-only memory map of its first `rows`
    rows (default: the rows its header declares). One-line MemvizError if it is not a spool's .npy
    or holds fewer rows."""
    from memviz.errors import MemvizError

    where = where or str(path)
    try:
        with open(path, "rb") as handle:
            version = npformat.read_magic(handle)
            if version != (1, 0):
                raise ValueError(f"npy version {version}")
            shape, fortran, dtype = npformat.read_array_header_1_0(handle, max_header_size=HEADER_BYTES)
            if handle.tell() != HEADER_BYTES or fortran or dtype.hasobject or not shape:
                raise ValueError("not a spool's header")
            size = os.fstat(handle.fileno()).st_size
    except (OSError, ValueError, SyntaxError, TypeError) as exc:
        raise MemvizError(f"{where}: not a spool file ({exc})") from None
    declared = int(shape[0])
    if rows is None:
        rows = declared
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    # the tokens file says how many rows a run completed; the header's count is for numpy (a kill
    # between a row and its count leaves it one behind), the file's size is what must hold them
    if size < HEADER_BYTES + rows * row_bytes:
        raise MemvizError(
            f"{where}: truncated ({max(0, size - HEADER_BYTES) // max(1, row_bytes)} of {rows} rows)"
        )
    if rows == 0 or row_bytes == 0:
        return np.zeros((rows, *shape[1:]), dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER_BYTES, shape=(rows, *shape[1:]))


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
