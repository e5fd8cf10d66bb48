"""Reading a user's text file: UTF-8, or decoded with replacement and a warning; bounded in size."""

from __future__ import annotations

from pathlib import Path

from memviz.errors import MemvizError

MAX_TEXT_BYTES = 8 * 2**20  # more than any run holds (a trace is capped at 50k tokens)


def read_text_file(path: str | Path) -> tuple[str, list[str]]:
    path = Path(path)
    warnings: list[str] = []
    if not path.exists():
        raise MemvizError(f"{path}: no such file")
    if path.is_dir():
        raise MemvizError(f"{path}: is a folder, not a text file")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_TEXT_BYTES + 1)
    except OSError as exc:
        raise MemvizError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_TEXT_BYTES:
        data = data[:MAX_TEXT_BYTES]
        warnings.append(f"{path}: only the first {MAX_TEXT_BYTES // 2**20} MiB are read")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        warnings.append(
            f"{path}: not valid UTF-8; {text.count(chr(0xFFFD))} undecodable byte(s) shown as \ufffd"
        )
    if not text.strip():
        raise MemvizError(f"{path}: empty text: nothing to read")
    return text, warnings
