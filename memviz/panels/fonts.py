"""Text shaping: skipped where no text needs it (drawing many short texts is then a quarter faster)."""

from __future__ import annotations

import re

from PySide6.QtGui import QFont

# Characters that never need shaping: Latin, Greek, Cyrillic and Armenian letters, punctuation and
# symbols (the visible-space and line-break marks among them). Combining marks, joining and bidi
# controls, and every other script (Hebrew, Arabic, Indic, ...) are left out.
_NEEDS_SHAPING = re.compile(
    "[^\x00-\u02ff\u0370-\u0482\u048a-\u058f\u1e00-\u1fff\u2000-\u200b\u2010-\u2029\u202f-\u20cf\u2100-\u2bff\ufffd]"
)


def needs_shaping(text: str) -> bool:
    """Whether `text` may look wrong without shaping (joined letters, marks placed on a base)."""
    return _NEEDS_SHAPING.search(text) is not None


def unshaped(font: QFont) -> QFont:
    """A copy of `font` that skips text shaping (Qt's PreferNoShaping: kerning and ligatures are lost).

    Only for texts that do not need shaping (`needs_shaping`): Qt skips it for every script it does
    not list as needing OpenType, and Arabic is not on that list, so its letters would show unjoined.
    """
    fast = QFont(font)
    fast.setStyleStrategy(font.styleStrategy() | QFont.StyleStrategy.PreferNoShaping)
    return fast
