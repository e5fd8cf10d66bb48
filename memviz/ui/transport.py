"""Transport controls: reset, step back, step forward, play/pause with a speed, generate N tokens.

The toolbars only hold actions and settings; the main window decides what each action does.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QSpinBox,
    QStyle,
    QToolBar,
    QWidget,
)

from memviz.core.sampling import SamplingConfig
from memviz.options import MAX_GENERATE

#: speed choices: label -> tokens per second (0 = as fast as the model goes)
SPEEDS: list[tuple[str, float]] = [
    ("1 tok/s", 1),
    ("2 tok/s", 2),
    ("5 tok/s", 5),
    ("10 tok/s", 10),
    ("20 tok/s", 20),
    ("50 tok/s", 50),
    ("100 tok/s", 100),
    ("max", 0),
]
DEFAULT_SPEED = 10.0


def fit_combo(combo: QComboBox) -> None:
    """Show a combo's choices whole: the box as wide as its longest item, the list never elided."""
    combo.setSizeAdjustPolicy(QComboBox.AdjustToContents)
    view = combo.view()
    view.setTextElideMode(Qt.ElideNone)
    widest = max(
        (combo.fontMetrics().horizontalAdvance(combo.itemText(i)) for i in range(combo.count())), default=0
    )
    view.setMinimumWidth(widest + 48)  # the check mark and the frame
    combo.updateGeometry()


class Transport(QToolBar):
    """Reset, step back, play/pause, step forward and the speed. Keys: Home, Left, Space, Right."""

    speed_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Transport", parent)
        self.setObjectName("transportToolBar")
        style = self.style()
        self.reset_action = QAction(style.standardIcon(QStyle.SP_MediaSkipBackward), "Reset", self)
        self.reset_action.setShortcut(QKeySequence(Qt.Key_Home))
        self.reset_action.setToolTip("Reset: forget the run and read the text again from the start (Home)")
        self.back_action = QAction(style.standardIcon(QStyle.SP_MediaSeekBackward), "Step back", self)
        self.back_action.setShortcut(QKeySequence(Qt.Key_Left))
        self.back_action.setToolTip("Step back: move the cursor one token back, recomputing nothing (Left)")
        self.play_action = QAction(style.standardIcon(QStyle.SP_MediaPlay), "Play", self)
        self.play_action.setCheckable(True)
        self.play_action.setShortcut(QKeySequence(Qt.Key_Space))
        self.play_action.setToolTip("Play / pause: read the text token by token (Space)")
        self.forward_action = QAction(style.standardIcon(QStyle.SP_MediaSeekForward), "Step forward", self)
        self.forward_action.setShortcut(QKeySequence(Qt.Key_Right))
        self.forward_action.setToolTip(
            "Step forward: next token of the trace; past its end, read (or generate) one more (Right)"
        )
        self.play_action.toggled.connect(self._show_play_state)
        for action in (self.reset_action, self.back_action, self.play_action, self.forward_action):
            self.addAction(action)
        self.addSeparator()
        self.addWidget(QLabel(" Speed "))
        self.speed = QComboBox()
        self.speed.setObjectName("speedCombo")
        for label, value in SPEEDS:
            self.speed.addItem(label, value)
        self.set_speed(DEFAULT_SPEED)
        self.speed.setToolTip("Tokens per second while playing and generating")
        fit_combo(self.speed)
        self.speed.currentIndexChanged.connect(lambda _i: self.speed_changed.emit(self.tokens_per_second()))
        self.addWidget(self.speed)
        self.note = QLabel("")  # why a run waits ("adding documents…"), empty otherwise
        self.note.setObjectName("transportNote")
        self.addWidget(self.note)

    def _show_play_state(self, playing: bool) -> None:
        style = self.style()
        self.play_action.setIcon(style.standardIcon(QStyle.SP_MediaPause if playing else QStyle.SP_MediaPlay))
        self.play_action.setText("Pause" if playing else "Play")

    def tokens_per_second(self) -> float:
        return float(self.speed.currentData())

    def set_speed(self, tokens_per_second: float) -> None:
        for i in range(self.speed.count()):
            if float(self.speed.itemData(i)) == float(tokens_per_second):
                self.speed.setCurrentIndex(i)
                return
        raise ValueError(f"no speed {tokens_per_second}")

    def set_waiting(self, why: str) -> None:
        """Show that a run waits for something that holds the model ("" = it does not)."""
        self.note.setText(f" paused: {why}" if why else "")
        self.play_action.setToolTip(
            f"Paused while {why.rstrip('…')}: play goes on afterwards"
            if why
            else "Play / pause: read the text token by token (Space)"
        )

    def set_playing(self, playing: bool) -> None:
        """Show the state without triggering the action."""
        blocked = self.play_action.blockSignals(True)
        self.play_action.setChecked(playing)
        self.play_action.blockSignals(blocked)
        self._show_play_state(playing)


class GenerateBar(QToolBar):
    """Generate N tokens with temperature, top-k, top-p and a seed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Generate", parent)
        self.setObjectName("generateToolBar")
        self.generate_action = QAction("Generate", self)
        self.generate_action.setShortcut(QKeySequence("Ctrl+G"))
        self.generate_action.setToolTip(
            "Generate N tokens after the text with these sampling settings (Ctrl+G)"
        )

        self.count = QSpinBox()
        self.count.setRange(1, MAX_GENERATE)  # a recurrent run reads any length (to disk)
        self.count.setValue(50)
        self.count.setToolTip("How many tokens to generate")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 5.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setDecimals(2)
        self.temperature.setValue(0.8)
        self.temperature.setToolTip("Temperature (0 = greedy: always the most likely token)")
        self.top_k = QSpinBox()
        self.top_k.setRange(0, 100_000)
        self.top_k.setValue(0)
        self.top_k.setSpecialValueText("off")
        self.top_k.setToolTip("Top-k: sample among the k most likely tokens (off = all)")
        self.top_p = QDoubleSpinBox()
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setDecimals(2)
        self.top_p.setValue(1.0)
        self.top_p.setToolTip("Top-p (nucleus): sample among the most likely tokens that reach this mass")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(0)
        self.seed.setToolTip("Random seed: the same seed gives the same tokens")

        for label, widget in (
            ("N", self.count),
            ("temp", self.temperature),
            ("top-k", self.top_k),
            ("top-p", self.top_p),
            ("seed", self.seed),
        ):
            self.addWidget(QLabel(f" {label} "))
            self.addWidget(widget)
        self.addAction(self.generate_action)

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(
            temperature=float(self.temperature.value()),
            top_k=int(self.top_k.value()),
            top_p=float(self.top_p.value()),
            seed=int(self.seed.value()),
        )

    def tokens(self) -> int:
        return int(self.count.value())
