"""The model picker: bundled models, recent folders, "Open folder..." and a Hugging Face id.

The dialog only chooses. The main window hands the choice to the worker, which loads it off the
UI thread; meanwhile the dialog shows a busy bar, and a failure comes back as a one-line reason.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from memviz.backends.placement import DEVICES, DTYPES, preferred, set_preferred
from memviz.backends.registry import bundled_models

RECENT_KEY = "models/recent"
MAX_RECENT = 8


def recent_models(settings: QSettings) -> list[str]:
    value = settings.value(RECENT_KEY, [])
    if isinstance(value, str):  # QSettings returns a lone string for a one-item list
        value = [value]
    return [str(v) for v in (value or []) if v]


def remember_model(settings: QSettings, spec: str) -> list[str]:
    """Put a successfully loaded folder (or id) first in the recent list."""
    items = [spec] + [s for s in recent_models(settings) if s != spec]
    items = items[:MAX_RECENT]
    settings.setValue(RECENT_KEY, items)
    settings.sync()
    return items


class ModelPicker(QDialog):
    """Choose a model. `chosen(spec)` fires with a bundled name, a folder or a Hugging Face id."""

    chosen = Signal(str)

    def __init__(self, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelPicker")
        self.setWindowTitle("Choose a model - memviz")
        self.settings = settings
        self.setMinimumWidth(520)
        layout = QVBoxLayout(self)

        intro = QLabel("Pick a model to watch. LSTMs show gates and cell state; GPT-2 shows attention.")
        intro.setWordWrap(True)
        layout.addWidget(intro)

        bundled = QGroupBox("Bundled models")
        box = QVBoxLayout(bundled)
        self.bundled_list = QListWidget()
        self.bundled_list.setObjectName("bundledList")
        for model in bundled_models():
            item = QListWidgetItem(f"{model.name}   ({model.architecture.upper()})")
            item.setData(Qt.UserRole, model.name)
            item.setToolTip(str(model.path))
            self.bundled_list.addItem(item)
        if not self.bundled_list.count():
            item = QListWidgetItem("(no bundled models installed)")
            item.setFlags(Qt.NoItemFlags)
            self.bundled_list.addItem(item)
        self.bundled_list.itemActivated.connect(self._activate)
        box.addWidget(self.bundled_list)
        layout.addWidget(bundled)

        recent = QGroupBox("Recent")
        box = QVBoxLayout(recent)
        self.recent_list = QListWidget()
        self.recent_list.setObjectName("recentList")
        self.recent_list.itemActivated.connect(self._activate)
        box.addWidget(self.recent_list)
        layout.addWidget(recent)
        self.refresh_recent()

        row = QHBoxLayout()
        self.folder_button = QPushButton("Open folder...")
        self.folder_button.setToolTip("A memviz LSTM folder or a GPT-2 folder in Hugging Face format")
        self.folder_button.clicked.connect(self.open_folder)
        row.addWidget(self.folder_button)
        row.addStretch(1)
        layout.addLayout(row)

        row = QHBoxLayout()
        row.addWidget(QLabel("Hugging Face id"))
        self.hf_id = QLineEdit()
        self.hf_id.setObjectName("hfId")
        self.hf_id.setPlaceholderText("gpt2, distilgpt2, gpt2-medium ... (downloaded if the network allows)")
        self.hf_id.returnPressed.connect(self._load_hf)
        row.addWidget(self.hf_id, 1)
        self.hf_button = QPushButton("Load")
        self.hf_button.clicked.connect(self._load_hf)
        row.addWidget(self.hf_button)
        layout.addLayout(row)

        row = QHBoxLayout()  # where a transformers model runs, and in what precision
        self.device_combo, self.dtype_combo = QComboBox(), QComboBox()
        self.device_combo.setObjectName("deviceCombo")
        self.dtype_combo.setObjectName("dtypeCombo")
        device, dtype = preferred()
        for combo, items, current, label in (
            (self.device_combo, DEVICES, device, "Device"),
            (self.dtype_combo, DTYPES, dtype, "Precision"),
        ):
            combo.addItems(list(items))
            combo.setCurrentText(str(settings.value(f"models/{label.lower()}", current)))
            row.addWidget(QLabel(label))
            row.addWidget(combo)
        self.device_combo.setToolTip("auto: the GPU where there is one, else the CPU")
        row.addStretch(1)
        layout.addLayout(row)

        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy: loading time is unknown
        self.progress.setTextVisible(False)
        self.progress.hide()
        layout.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setObjectName("pickerStatus")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

        row = QHBoxLayout()
        row.addStretch(1)
        self.load_button = QPushButton("Load selected")
        self.load_button.setDefault(True)
        self.load_button.clicked.connect(self._load_selected)
        row.addWidget(self.load_button)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        row.addWidget(close)
        layout.addLayout(row)

    # -- choices --------------------------------------------------------------------------------
    def refresh_recent(self) -> None:
        self.recent_list.clear()
        for spec in recent_models(self.settings):
            item = QListWidgetItem(spec)
            item.setData(Qt.UserRole, spec)
            if not Path(spec).expanduser().exists() and ("/" in spec or "\\" in spec):
                item.setToolTip("folder not found")
                item.setForeground(Qt.gray)
            self.recent_list.addItem(item)

    def _activate(self, item: QListWidgetItem) -> None:
        spec = item.data(Qt.UserRole)
        if spec:
            self.choose(str(spec))

    def _load_selected(self) -> None:
        for widget in (self.recent_list, self.bundled_list):
            item = widget.currentItem()
            if item is not None and item.data(Qt.UserRole) and widget.hasFocus():
                self.choose(str(item.data(Qt.UserRole)))
                return
        for widget in (self.bundled_list, self.recent_list):
            item = widget.currentItem()
            if item is not None and item.data(Qt.UserRole):
                self.choose(str(item.data(Qt.UserRole)))
                return
        if self.hf_id.text().strip():
            self._load_hf()

    def _load_hf(self) -> None:
        spec = self.hf_id.text().strip()
        if spec:
            self.choose(spec)

    def open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a model folder", str(Path.home()))
        if folder:
            self.choose(folder)

    def choose(self, spec: str) -> None:
        device, dtype = self.device_combo.currentText(), self.dtype_combo.currentText()
        set_preferred(device, dtype)  # the worker's load_backend(spec) takes them
        self.settings.setValue("models/device", device)
        self.settings.setValue("models/precision", dtype)
        self.chosen.emit(spec)

    # -- loading feedback (driven by the main window) ---------------------------------------------
    def set_loading(self, spec: str | None) -> None:
        busy = spec is not None
        self.progress.setVisible(busy)
        for widget in (
            self.bundled_list,
            self.recent_list,
            self.folder_button,
            self.hf_id,
            self.hf_button,
            self.load_button,
            self.device_combo,
            self.dtype_combo,
        ):
            widget.setEnabled(not busy)
        self.status.setText(f"Loading {spec} ..." if busy else "")

    def show_failure(self, spec: str, reason: str) -> None:
        self.set_loading(None)
        self.status.setText(f"Could not load {spec}: {reason}")
