"""The Experiments window's models: a list (one curve each) and Add model (bundled, recent, a folder
or a Hugging Face id, as the Model picker offers them) / Remove. It only lists specs: the
experiment's job loads them with `load_backend`."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)


def bundled():
    from memviz.backends.bundled import bundled_models

    return bundled_models()


class ModelList(QGroupBox):
    """The models an experiment runs, in order (the plot's colours follow it)."""

    def __init__(self, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__("Models (one curve each)", parent)
        self.settings = settings  # the Model picker's recent models
        box = QVBoxLayout(self)
        self.list = QListWidget()
        self.list.setObjectName("experimentModels")
        self.list.setMaximumHeight(110)
        box.addWidget(self.list)
        row = QHBoxLayout()
        self.add_button = QToolButton()
        self.add_button.setText("Add model")
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.add_menu = QMenu(self.add_button)
        self.add_menu.aboutToShow.connect(self._fill_add_menu)  # recent models as they are now
        self.add_button.setMenu(self.add_menu)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        row.addStretch(1)
        box.addLayout(row)

    def specs(self) -> list[str]:
        return [str(self.list.item(i).data(Qt.UserRole)) for i in range(self.list.count())]

    def add(self, spec: str) -> None:
        if not spec or spec in self.specs():
            return
        item = QListWidgetItem(spec)
        item.setData(Qt.UserRole, spec)
        item.setToolTip(spec)
        self.list.addItem(item)

    def set_specs(self, specs: list[str]) -> None:
        self.list.clear()
        for spec in specs:
            self.add(spec)

    def remove_selected(self) -> None:
        for item in self.list.selectedItems():
            self.list.takeItem(self.list.row(item))

    def _fill_add_menu(self) -> None:
        from memviz.ui.model_picker import recent_models

        menu = self.add_menu
        menu.clear()
        models = bundled()
        if models:
            menu.addSection("Bundled")
        for model in models:
            action = QAction(f"{model.name}  ({model.architecture.upper()})", menu)
            action.triggered.connect(lambda _c=False, s=model.name: self.add(s))
            menu.addAction(action)
        recent = recent_models(self.settings)
        if recent:
            menu.addSection("Recent")
        for spec in recent:
            action = QAction(spec, menu)
            action.triggered.connect(lambda _c=False, s=spec: self.add(s))
            menu.addAction(action)
        menu.addSeparator()
        menu.addAction("Folder...", self._add_folder)
        menu.addAction("Hugging Face id...", self._add_hf_id)

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A model folder", str(Path.home()))
        if folder:
            self.add(folder)

    def _add_hf_id(self) -> None:
        spec, ok = QInputDialog.getText(self, "Hugging Face id", "Model id (gpt2, distilgpt2, ...)")
        if ok and spec.strip():
            self.add(spec.strip())
