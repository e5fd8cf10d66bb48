"""The questions export asks the user: file filters and the extension a typed name gets, the PNG
scale, the animation's panel, steps and speed, the CSV series, the format of "Export all panels".

Split out of export_actions.py (issue 14): these build and run the dialogs; ExportActions decides
what to ask and does the exporting.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QInputDialog,
    QSpinBox,
    QWidget,
)

from memviz.panels.base import Panel

FIGURE_FILTER = "PNG image (*.png);;SVG vector (*.svg);;PDF vector (*.pdf)"
ANIMATION_FILTER = "GIF animation (*.gif);;MP4 video (*.mp4)"
SESSION_FILTER = "memviz sessions (*.memviz)"
FIGURE_FORMATS = ["png", "svg", "pdf"]
SERIES_LABELS = {
    "unit": "the selected unit over time",
    "attention": "the selected head's attention matrix",
    "topk": "the next-token distribution at this step",
}


def with_suffix(path: str, selected_filter: str, default: str) -> str:
    """The chosen name, with the filter's extension when the user typed none."""
    if Path(path).suffix:
        return path
    for ext in ("png", "svg", "pdf", "gif", "mp4", "csv", "memviz"):
        if f"*.{ext}" in selected_filter:
            return f"{path}.{ext}"
    return f"{path}.{default}"


def ask_scale(
    window: QWidget, low: float, high: float, size: tuple[int, int], default: float = 2.0
) -> float | None:
    """The PNG scale, in [low, high]; None when the user cancels."""
    width, height = size
    value, ok = QInputDialog.getDouble(
        window,
        "Export figure",
        f"Scale (pixels per screen pixel, {low:g} to {high:g}; the figure is {width}x{height} at 1)",
        min(max(default, low), high),
        low,
        high,
        2,
    )
    return float(value) if ok else None


def ask_format(window: QWidget) -> str | None:
    """The format of "Export all panels"; None when the user cancels."""
    fmt, ok = QInputDialog.getItem(window, "Export all panels", "Format", FIGURE_FORMATS, 0, False)
    return fmt if ok else None


def ask_series(window: QWidget, choices: list[str]) -> str | None:
    """Which series to export as CSV, of `choices`; None when the user cancels."""
    labels = [SERIES_LABELS[c] for c in choices]
    label, ok = QInputDialog.getItem(window, "Export data", "Series", labels, 0, False)
    if not ok:
        return None
    return choices[labels.index(label)]


class AnimationDialog(QDialog):
    """The panel to animate (the current one first), the steps from and to, frames per second."""

    def __init__(self, parent: QWidget, panels: dict[str, Panel], current: Panel, steps: int) -> None:
        super().__init__(parent)
        self.setObjectName("animationDialog")
        self.setWindowTitle("Export animation")
        form = QFormLayout(self)
        self.choice = QComboBox()
        self.choice.setObjectName("animationPanel")
        for p in panels.values():
            self.choice.addItem(p.title, p.name)
        self.choice.setCurrentIndex(max(0, self.choice.findData(current.name)))
        form.addRow("panel", self.choice)
        self.start, self.stop, self.fps = QSpinBox(), QSpinBox(), QDoubleSpinBox()
        for spin in (self.start, self.stop):
            spin.setRange(0, steps - 1)
        self.stop.setValue(steps - 1)
        self.fps.setRange(0.5, 60)
        self.fps.setValue(4)
        form.addRow("from step", self.start)
        form.addRow("to step", self.stop)
        form.addRow("frames per second", self.fps)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
