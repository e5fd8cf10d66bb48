"""Checks on where the user asks us to write, made before any work so a bad path costs nothing."""

from __future__ import annotations

import os
from pathlib import Path

from memviz.errors import MemvizError


def output_file(path: str | os.PathLike, label: str = "") -> Path:
    """`path` as a file we can create: not a folder, inside an existing, writable folder.

    `label` names the option in the message (e.g. "--out ").
    """
    path = Path(path)
    if path.is_dir():
        raise MemvizError(f"{label}{path}: is a folder; give a file name such as run.memviz")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise MemvizError(f"{label}{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise MemvizError(f"{label}{path}: folder {folder} is not writable")
    return path
