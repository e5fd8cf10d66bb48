"""Checks on where the user asks us to write, made before any work so a bad path costs nothing;
and writing there by replacing, so a failed write never leaves half a file in place of a good one."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from memviz.errors import MemvizError


def output_file(path: str | os.PathLike, label: str = "") -> Path:
    """`path` as a file we can create or replace: a new name or a regular file, in a writable folder.

    Anything else is refused: a rename over a device node or a FIFO would replace it (as root,
    `--out /dev/full` replaced the device), and writing into one blocks or fails.
    `label` names the option in the message (e.g. "--out ").
    """
    path = Path(path)
    if path.is_dir():
        raise MemvizError(f"{label}{path}: is a folder; give a file name such as run.memviz")
    try:
        mode = os.stat(path).st_mode  # follows links: a link to a device is a device
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise MemvizError(f"{label}{path}: cannot use ({exc.strerror})") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise MemvizError(f"{label}{path}: is {_kind(mode)}, not a regular file; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise MemvizError(f"{label}{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise MemvizError(f"{label}{path}: folder {folder} is not writable")
    return path


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def temporary_beside(path: Path) -> Path:
    """A fresh name in the same folder (so the rename stays on one file system), same suffix (writers
    such as ffmpeg choose the format from it), hidden, and unique to this process."""
    return path.parent / f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}"


@contextmanager
def replacing(path: str | os.PathLike, label: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; when the block ends well, rename it onto `path`.

    On any failure the temporary file is removed and `path` is left as it was. An OSError (a full
    disk, a file size limit) becomes one clear MemvizError; so does a writer that reports success
    but wrote nothing. Messages name `path`, not the temporary file.
    """
    path = output_file(path, label)
    tmp = temporary_beside(path)
    try:
        yield tmp
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise MemvizError(f"{label}{path}: cannot write (nothing was written)")
        os.replace(tmp, path)
    except OSError as exc:
        raise MemvizError(f"{label}{path}: cannot write ({exc.strerror or exc})") from None
    except MemvizError as exc:
        message = str(exc)
        if str(tmp) in message:  # a writer's own message names the file it was given
            raise MemvizError(message.replace(str(tmp), str(path))) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def runs_folder() -> Path:
    """Where runs keep their spool folders while they go (memviz.core.run_folder): the user's cache
    folder (`memviz/runs` under platformdirs' user cache dir), or $MEMVIZ_RUNS_DIR. Not /tmp, so
    a run that crashed is still there to recover (`memviz recover`)."""
    override = os.environ.get("MEMVIZ_RUNS_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("memviz")) / "runs"


def new_run_folder() -> Path:
    """A fresh, private folder for one run under `runs_folder()` (named by its start time and
    process); in the system's temporary folder when the cache cannot be written."""
    import tempfile
    import time

    prefix = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-"
    try:
        parent = runs_folder()
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    except OSError:
        return Path(tempfile.mkdtemp(prefix=f"memviz-{prefix}"))
