"""Fonts for the many short texts a frame draws with drawText (no cached layout)."""

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


def text_font(point_size: int, unshaped: bool = False) -> QFont:
    """The application's font at `point_size`; with `unshaped`, one that skips text shaping
    (Qt's PreferNoShaping: kerning and ligatures are lost, and drawing is a quarter faster).

    Only for texts that do not need shaping (`needs_shaping`): Qt skips it for every script it does
    not list as needing OpenType, and Arabic is not on that list, so its letters would show unjoined.
    """
    font = QFont()
    font.setPointSize(point_size)
    if unshaped:
        font.setStyleStrategy(font.styleStrategy() | QFont.StyleStrategy.PreferNoShaping)
    return font
