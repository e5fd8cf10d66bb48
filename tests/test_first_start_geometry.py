"""On first start the window fills the available screen; later it opens as it was left."""

from __future__ import annotations


def test_first_start_fills_the_screen_then_the_stored_geometry_wins(qtbot, settings, monkeypatch):
    from memviz.ui.app import show_window
    from memviz.ui.main_window import MainWindow

    monkeypatch.setattr(MainWindow, "ask_before_discarding", False)
    first = MainWindow(settings=settings)
    qtbot.addWidget(first)
    try:
        show_window(first)
        qtbot.waitExposed(first)
        area = first.screen().availableGeometry()
        # the whole area (offscreen's screen is smaller than the window's minimum width: that one wins)
        assert first.geometry().size() == area.size().expandedTo(first.minimumSize())
        first.showNormal()
        first.setGeometry(area.x() + 10, area.y() + 10, 960, 650)
        settings.setValue("window/geometry", first.saveGeometry())
    finally:
        first.shutdown()

    again = MainWindow(settings=settings)
    qtbot.addWidget(again)
    try:
        show_window(again)
        qtbot.waitExposed(again)
        assert (again.width(), again.height()) == (960, 650)
    finally:
        again.shutdown()
