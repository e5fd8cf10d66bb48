"""The prompt editor: type a text, open a text file, or drop one on it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from memviz.errors import MemvizError
from memviz.textio import read_text_file

DEFAULT_TEXT = (
    "The for statement in Python differs a bit from what you may be used to in C or Pascal. "
    "Rather than always iterating over an arithmetic progression of numbers, "
    "Python's for statement iterates over the items of any sequence, in the order that they appear."
)


BINARY_PROBE_BYTES = 8192  # NUL bytes in a file's first 8 KiB: a program or an image, not a text


def read_text(path: str | Path) -> tuple[str, list[str]]:
    """A text file and its warnings (memviz.textio); a file that is clearly binary (it holds NUL
    bytes, which no text in any encoding the app reads does) is refused with a clear reason."""
    try:
        with Path(path).open("rb") as handle:
            head = handle.read(BINARY_PROBE_BYTES)
    except OSError:
        head = b""  # read_text_file says why it cannot be read
    if b"\x00" in head:
        raise MemvizError(f"{path}: a binary file (a program, an image or an archive?), not a text")
    return read_text_file(path)


class TextEditor(QPlainTextEdit):
    """Plain text editor for the prompt. Ctrl+Enter reads it; Esc hands the keys back to the player."""

    file_loaded = Signal(str, list)  # path, warnings
    file_failed = Signal(str)  # one-line reason
    run_requested = Signal()  # Ctrl+Enter: read the text
    leave_requested = Signal()  # Esc: give focus back (so that Space plays)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("promptEditor")
        self.setAcceptDrops(True)
        self.setPlaceholderText("Type or drop a text here. Ctrl+Enter reads it (or Esc, then Space to play).")
        self.setTabChangesFocus(False)
        self.path: Path | None = None

    def text(self) -> str:
        return self.toPlainText()

    def load_file(self, path: str | Path) -> bool:
        """Replace the text by a file's. Failures are reported through `file_failed`, not raised."""
        try:
            text, warnings = read_text(path)
        except MemvizError as exc:
            self.file_failed.emit(str(exc))
            return False
        self.setPlainText(text)
        self.path = Path(path)
        self.file_loaded.emit(str(path), warnings)
        return True

    # -- drag and drop --------------------------------------------------------------------------
    @staticmethod
    def _dropped_file(event) -> str | None:
        mime = event.mimeData()
        if mime is None or not mime.hasUrls():
            return None
        for url in mime.urls():
            if url.isLocalFile():
                return url.toLocalFile()
        return None

    def dragEnterEvent(self, event) -> None:
        if self._dropped_file(event):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:
        if self._dropped_file(event):
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event) -> None:
        path = self._dropped_file(event)
        if path:
            event.acceptProposedAction()
            self.load_file(path)
        else:
            super().dropEvent(event)

    # -- keys ---------------------------------------------------------------------------------------
    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key_Return, Qt.Key_Enter) and event.modifiers() & Qt.ControlModifier:
            self.run_requested.emit()
            return
        if event.key() == Qt.Key_Escape:
            self.leave_requested.emit()
            return
        super().keyPressEvent(event)

    @staticmethod
    def run_shortcut() -> QKeySequence:
        return QKeySequence("Ctrl+Return")
