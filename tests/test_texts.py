"""Per-step texts: LiveLabel (repaints without re-laying out the window) and StaticTexts (laid out once)."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QHBoxLayout, QWidget  # noqa: E402

from memviz.panels.live_label import ELIDED_MIN_WIDTH, LiveLabel  # noqa: E402


def test_text_room_tooltip_and_accessible_name(qtbot):
    holder = QWidget()
    qtbot.addWidget(holder)
    label = LiveLabel("step 9 of 9")
    QHBoxLayout(holder).addWidget(label)
    holder.show()
    assert label.text() == "step 9 of 9" and label.accessibleName() == "step 9 of 9"
    width = label.sizeHint().width()
    label.setText("step 10 of 10")  # more room: the hint grows ...
    grown = label.sizeHint().width()
    assert grown > width
    label.setText("step 1 of 10")  # ... and stays, so neighbours do not jump back and forth
    assert label.sizeHint().width() == grown and label.accessibleName() == "step 1 of 10"
    assert label.minimumSizeHint().width() == ELIDED_MIN_WIDTH

    label.setText("a long note that cannot fit in a narrow dock at all")
    label.setFixedWidth(60)  # squeezed: the text is elided, and the tooltip holds all of it
    label.grab()  # a paint
    assert label.toolTip() == "a long note that cannot fit in a narrow dock at all"
    label.setFixedWidth(1000)
    label.grab()  # a paint
    assert label.toolTip() == ""


def test_static_texts_skip_shaping_only_where_no_text_needs_it(qtbot):
    from PySide6.QtGui import QFont

    from memviz.panels.static_texts import StaticTexts

    texts = StaticTexts()
    number, number_font = texts.entry("0.0124")
    word, word_font = texts.entry("\u0645\u0631\u062d\u0628\u0627")  # Arabic: its letters join
    assert number_font is texts.unshaped and word_font is texts.font
    assert number_font.styleStrategy() & QFont.StyleStrategy.PreferNoShaping
    assert not word_font.styleStrategy() & QFont.StyleStrategy.PreferNoShaping
    assert texts.entry("0.0124")[0] is number  # laid out once
