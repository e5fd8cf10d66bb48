"""A figure's file: its format from its name, a checked output path, a safe file name, and the
bytes written beside it and renamed onto it. Split out of render.py (issue 14)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from memviz.errors import MemvizError
from memviz.paths import output_file, replacing

FORMATS = ("png", "svg", "pdf")


def format_from_path(path: str | os.PathLike, allowed: Iterable[str] = FORMATS) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    suffix = {"jpeg": "jpg"}.get(suffix, suffix)
    allowed = tuple(allowed)
    if suffix not in allowed:
        raise MemvizError(
            f"{path}: cannot tell the format from the name; end it with "
            + ", ".join("." + f for f in allowed)
        )
    return suffix


def check_out_path(path: str | os.PathLike) -> Path:
    return output_file(path, "--out ")


def safe_file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "figure"


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` beside `path`, check every write and the close, then rename it onto `path`."""
    with replacing(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
