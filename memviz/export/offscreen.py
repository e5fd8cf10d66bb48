"""The QApplication figures are drawn in: created on the offscreen platform when there is none (no
window needed), with its per-widget warnings kept quiet. Split out of render.py (issue 14)."""

from __future__ import annotations

import os
import sys


def ensure_app():
    """The QApplication, created on the offscreen platform when there is none (no window needed)."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        _quiet_offscreen_warnings()
        app = QApplication(["memviz-export"])
    return app


def _quiet_offscreen_warnings() -> None:
    """The offscreen platform warns on every shown widget ("does not support propagateSizeHints")."""
    from PySide6.QtCore import QtMsgType, qInstallMessageHandler

    def handler(kind, context, message: str) -> None:
        if "propagateSizeHints" in message:
            return
        if kind != QtMsgType.QtDebugMsg:
            sys.stderr.write(message + "\n")

    global _MESSAGE_HANDLER
    _MESSAGE_HANDLER = handler  # keep a reference: Qt holds only a pointer
    qInstallMessageHandler(handler)


_MESSAGE_HANDLER = None


def process_events(rounds: int = 3) -> None:
    from PySide6.QtWidgets import QApplication

    for _ in range(rounds):
        QApplication.processEvents()
