"""The Session's kNN key of every step, kept on disk beside the run, not in RAM.

"Remember this run" (MemoryStore.remember_run) stores a finished run's keys, and the knn experiment
scores with them, so the Session keeps one key a step: 1 KB a step for the bundled LSTM, 3 KB for
GPT-2 small, which a list in RAM grew without bound on a long run (65 MB at 60,000 steps). They go
to `knn-keys.npy` in the run's folder (memviz.core.run_folder; not part of the saved trace) as an
append-only spool (memviz.core.npy_spool): reads are a memory map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from memviz.core.npy_spool import NpySpool
from memviz.errors import MemvizError

FILE_NAME = "knn-keys.npy"


class KnnKeys:
    """A list of [D] float32 keys (append, extend, len, index, slice, iterate, clear) in a spool
    file in the folder `folder()` gives (asked at the first append)."""

    def __init__(self, folder: Callable[[], Path]) -> None:
        self._folder = folder
        self._spool: NpySpool | None = None

    def append(self, key) -> None:
        row = np.asarray(key, dtype=np.float32)
        try:
            if self._spool is None:
                self._spool = NpySpool(self._folder() / FILE_NAME, row.shape, np.float32)
            self._spool.append(row)
        except OSError as exc:  # a full disk: the step is not read (the trace's steps stay)
            raise MemvizError(
                f"cannot write the run ({exc.strerror or exc}): it stops at {len(self)} steps"
            ) from None

    def extend(self, keys: Iterable) -> None:
        for key in keys:
            self.append(key)

    def clear(self) -> None:
        """Forget every key (the next append starts the file again)."""
        self._spool = None

    def view(self) -> np.ndarray:
        """Every key so far: [n, D], read-only."""
        if self._spool is None:
            return np.zeros((0, 0), dtype=np.float32)
        return self._spool.view()

    def __len__(self) -> int:
        return 0 if self._spool is None else len(self._spool)

    def __getitem__(self, index):
        return self.view()[index]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.view())
