"""The status bar: the model, the step, the speed, the context, and one line of news at a time.

The permanent labels change only when what they show changes (LiveLabel), so a new step repaints
them without a relayout of the window. Every message is also kept in `messages` (tests, the log).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMessageBox, QProgressBar, QStatusBar, QWidget

from memviz.core.trace import Trace
from memviz.panels.live_label import LiveLabel

MESSAGE_MS = 20_000  # how long a message stays


def error_box(parent: QWidget, title: str, reason: str) -> QMessageBox:
    """A window-modal, non-blocking error box (deleted when closed)."""
    box = QMessageBox(QMessageBox.Critical, "memviz", title, QMessageBox.Ok, parent)
    box.setInformativeText(reason)
    box.setAttribute(Qt.WA_DeleteOnClose)
    box.open()
    return box


def warning_box(parent: QWidget, title: str, text: str) -> QMessageBox:
    """A window-modal, non-blocking warning (deleted when closed)."""
    box = QMessageBox(QMessageBox.Warning, "memviz", title, QMessageBox.Ok, parent)
    box.setInformativeText(text)
    box.setAttribute(Qt.WA_DeleteOnClose)
    box.open()
    return box


#: what the keys do, shown while the editor has them and while the player has them
EDITING_KEYS = "typing \u2014 Ctrl+Enter: read it and play \u00b7 Esc: keys to the player"
PLAYER_KEYS = "Space: play/pause \u00b7 \u2190 \u2192: step \u00b7 Home: reset"


def step_text(cursor: int, steps: int) -> str:
    """Steps are 0-based everywhere (the panels' axes, `--step`): "step 4 of 0-7"."""
    return f"step {cursor} of 0\u2013{steps - 1}" if steps else "no steps yet"


class StatusLine:
    """Builds its widgets into a QStatusBar and keeps them up to date."""

    def __init__(self, bar: QStatusBar) -> None:
        self.bar = bar
        self.messages: list[str] = []
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(120)
        self.busy.setTextVisible(False)
        self.busy.hide()
        self.model_label = QLabel("no model")  # changes only when a model or trace opens
        self.step_label = LiveLabel("")
        self.rate_label = LiveLabel("")
        self.context_label = LiveLabel("")
        self.keys_label = QLabel(PLAYER_KEYS)  # what the keys do now: typing or playing
        self.keys_label.setObjectName("keysHint")
        for widget in (
            self.keys_label,
            self.busy,
            self.model_label,
            self.step_label,
            self.rate_label,
            self.context_label,
        ):
            bar.addPermanentWidget(widget)

    def show_keys(self, editing: bool) -> None:
        self.keys_label.setText(EDITING_KEYS if editing else PLAYER_KEYS)

    def message(self, text: str) -> None:
        self.messages.append(text)
        self.bar.showMessage(text, MESSAGE_MS)

    def show_loading(self, spec: str | None) -> None:
        self.busy.setVisible(spec is not None)
        if spec is not None:
            self.model_label.setText(f"loading {spec} ...")

    def update(self, trace: Trace | None, info, cursor: int, rate: float, loading: str | None) -> None:
        T = 0 if trace is None else len(trace)
        if loading:
            pass  # "loading ..." stays until the model is there
        elif info is not None:
            self.model_label.setText(f"{info.name} ({info.architecture.upper()})")
        elif trace is not None:
            self.model_label.setText(f"{trace.model.get('name', '?')} (saved trace)")
        else:
            self.model_label.setText("no model")
        self.step_label.setText(step_text(cursor, T))
        self.rate_label.setText(f"{rate:.1f} tok/s" if rate else "- tok/s")
        if info is not None:
            size = info.context_size
            if size and trace is not None and trace.has("window_start"):  # reading past the window
                self.context_label.setText(f"context {T}, windows of {size}")
                stride = (trace.extra_manifest.get("slide") or {}).get("stride", "?")
                self.context_label.setToolTip(
                    f"Reading past the context window: each step sees only its window of at most "
                    f"{size} tokens, and a new window begins every {stride} tokens (the dashed marks "
                    "in the token strip and the attention panel)."
                )
            elif size:
                self.context_label.setText(f"context {T} / {size}")
            else:
                self.context_label.setText(f"context {T} (no window)")
                self.context_label.setToolTip(
                    "An LSTM has no context window: its memory is the cell state. A run reads texts "
                    "of any length: each step goes to disk as it is read, so RAM stays small "
                    "(a full disk stops the run; `memviz recover` rebuilds a run that crashed)."
                )
        else:
            self.context_label.setText(f"{T} tokens" if trace is not None else "")
