"""Tokens as bytes, shown readably (Qt-free: panels, the token strip and export share it).

A byte-level token may hold part of a UTF-8 character. Such bytes are shown as `‹C3›` (hex in
single guillemets) in labels, everywhere the same; whole characters are shown as themselves.
Joining the tokens' bytes and decoding gives back the text exactly (`join_text`).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable

_HANDLER = "memviz-token-bytes"


def _show_bytes(error: UnicodeDecodeError) -> tuple[str, int]:
    bad = error.object[error.start : error.end]
    return "".join(f"‹{b:02X}›" for b in bad), error.end


codecs.register_error(_HANDLER, _show_bytes)


def token_display(data: bytes) -> str:
    """A token's label text: its characters, and `‹XX›` for each byte of a partial character."""
    return data.decode("utf-8", errors=_HANDLER)


def join_text(pieces: Iterable[bytes]) -> str:
    """The text the tokens spell (bytes that never form a character become U+FFFD)."""
    return b"".join(pieces).decode("utf-8", errors="replace")


def is_partial(data: bytes) -> bool:
    """True when the token holds only part of a character (or bytes that are not UTF-8)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
