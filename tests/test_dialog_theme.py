"""File dialogs follow the app's theme: dark views and headers in the dark theme, light in the talk one
(issue 13: in the dark theme they were white with pale headers)."""

from __future__ import annotations

from statistics import median

import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFileDialog, QListView, QTreeView, QWidget


def luminance_median(widget: QWidget) -> float:
    """The median luminance (0-255) of what the widget paints: its background, as it fills most of it."""
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    values = [
        image.pixelColor(x, y).lightness()
        for y in range(0, image.height(), 3)
        for x in range(0, image.width(), 3)
    ]
    return median(values)


def open_dialog(window, qtbot) -> QFileDialog:
    # the static getOpenFileName is modal; the same widget dialog, parented to the window, shown
    dialog = QFileDialog(window, "Open a text", str(window.settings.fileName()), "All files (*)")
    dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
    dialog.setViewMode(QFileDialog.ViewMode.Detail)
    qtbot.addWidget(dialog)
    dialog.resize(800, 500)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


@pytest.mark.parametrize(("theme", "dark"), [("dark", True), ("talk", False)])
def test_file_dialog_follows_the_theme(make_window, qtbot, theme, dark):
    window = make_window()
    window.set_theme(theme)
    dialog = open_dialog(window, qtbot)
    files = dialog.findChild(QTreeView, "treeView")
    sidebar = dialog.findChild(QListView, "sidebar")
    assert files is not None and sidebar is not None
    parts = {
        "dialog": dialog,
        "file list": files.viewport(),
        "header": files.header(),
        "sidebar": sidebar.viewport(),
    }
    for name, widget in parts.items():
        value = luminance_median(widget)
        if dark:
            assert value < 80, f"{name} is light ({value}) in the dark theme"
        else:
            assert value > 200, f"{name} is dark ({value}) in the talk theme"


def test_header_text_is_readable_in_the_dark_theme(make_window, qtbot):
    window = make_window()
    window.set_theme("dark")
    dialog = open_dialog(window, qtbot)
    header = dialog.findChild(QTreeView, "treeView").header()
    image = header.grab().toImage()
    lightest = max(
        image.pixelColor(x, y).lightness() for y in range(image.height()) for x in range(image.width())
    )
    # the labels ("Name", "Size") are light on the dark section: a wide gap, not pale on pale
    assert lightest - luminance_median(header) > 100
