"""LiveLabel: per-step texts that repaint without re-laying out the window."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QHBoxLayout, QWidget  # noqa: E402

from memviz.ui.live_label import ELIDED_MIN_WIDTH, LiveLabel  # noqa: E402


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
