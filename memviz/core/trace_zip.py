"""The `.npz` archive of a format 2 trace: small members deflated, the big q/k members stored.

Stored (uncompressed) members can be memory-mapped straight from the archive, so opening an
8,192-token trace reads its queries and keys page by page instead of into RAM; `numpy.load(path)`
still opens the file as any npz (no pickle). Big arrays are written in chunks, so saving never
holds a second copy of them either.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npformat

WRITE_CHUNK_ROWS_BYTES = 16 * 2**20


def write_npz(
    handle: BinaryIO, arrays: Mapping[str, np.ndarray], stored: frozenset[str] = frozenset()
) -> None:
    """Write `arrays` as an npz into an open binary file; members named in `stored` uncompressed."""
    with zipfile.ZipFile(handle, "w", allowZip64=True) as archive:
        for key, value in arrays.items():
            method = zipfile.ZIP_STORED if key in stored else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            with archive.open(info, "w", force_zip64=True) as member:
                _write_array(member, value)


def _write_array(member: BinaryIO, value: np.ndarray) -> None:
    value = np.asanyarray(value)
    if value.ndim == 0 or value.dtype.hasobject or value.nbytes <= WRITE_CHUNK_ROWS_BYTES:
        npformat.write_array(member, np.asarray(value), allow_pickle=False)
        return
    npformat.write_array_header_1_0(member, npformat.header_data_from_array_1_0(value))
    row_bytes = max(1, value[0].nbytes)
    step = max(1, WRITE_CHUNK_ROWS_BYTES // row_bytes)
    for start in range(0, len(value), step):
        member.write(np.ascontiguousarray(value[start : start + step]).tobytes())


def memmap_member(path: Path, name: str) -> np.memmap | None:
    """A read-only memory map of a stored `.npy` member of the npz at `path`; None where the member
    is compressed (then it is read like any other)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            return None
        with path.open("rb") as raw:
            raw.seek(info.header_offset)
            local = raw.read(30)
            if local[:4] != b"PK\x03\x04":
                return None
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            raw.seek(start)
            version = npformat.read_magic(raw)
            if version == (1, 0):
                shape, fortran, dtype = npformat.read_array_header_1_0(raw)
            else:
                shape, fortran, dtype = npformat.read_array_header_2_0(raw)
            offset = raw.tell()
    if fortran or dtype.hasobject:
        return None
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))
