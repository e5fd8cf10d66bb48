"""The window's model switching: loading a model and following the load, the model picker, and the
unsaved-run question (Save / Discard / Cancel) asked before a run is lost. A mixin for MainWindow."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from memviz.ui.model_picker import ModelPicker, remember_model


class ModelSwitching:
    """MainWindow's model slots: load, follow the load, pick, and ask before an unsaved run goes."""

    def load_model(self, spec: str, play: bool = False) -> None:
        """Ask the worker to load a model (bundled name, folder or Hugging Face id)."""
        self.playback.load_model(spec, play=play)

    def _on_loading_changed(self, spec: str | None) -> None:
        self.status.show_loading(spec)
        if self.picker is not None:
            self.picker.set_loading(spec)
        if spec is None:
            self._update_status()

    def _on_model_loaded(self, spec: str, _info) -> None:
        if self.worker.session is not None:  # a store of another model no longer fits: memory goes off
            self.memory_controls.set_backend(
                self.worker.session.backend, open_default=self._memory_after_load is None
            )
        if self._memory_after_load is not None:
            path, self._memory_after_load = self._memory_after_load, None
            self._open_memory_now(path)
        if Path(spec).expanduser().is_dir() or ("/" in spec and not Path(spec).exists()):
            remember_model(self.settings, spec)
        if self.picker is not None:
            self.picker.refresh_recent()
            self.picker.accept()
        self.strip.placeholder = "Press Ctrl+Enter to read the text (or Space to play)"
        self.strip.update()
        self.strip.setFocus()

    def _on_load_failed(self, spec: str, reason: str) -> None:
        if self.picker is not None:
            self.picker.show_failure(spec, reason)
        self.show_error(f"Could not load {spec}", reason)

    def open_model_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a model folder", str(Path.home()))
        if folder:
            self.choose_model(folder)

    def choose_model(self, spec: str) -> None:
        """The user chose another model: an unsaved run is kept or dropped as they say."""
        if self.confirm_discard("loading another model"):
            self.load_model(spec)

    def show_model_picker(self) -> ModelPicker:
        if self.picker is None:
            self.picker = ModelPicker(self.settings, self)
            self.picker.chosen.connect(self.choose_model)
        self.picker.refresh_recent()
        self.picker.set_loading(self._loading)
        self.picker.show()
        self.picker.raise_()
        return self.picker

    def run_is_unsaved(self) -> bool:
        """A live run with steps that was not saved (a saved trace opened from a file is saved)."""
        trace = self.trace
        return (
            self.info is not None
            and trace is not None
            and len(trace) > 0
            and not self.export_actions.is_saved(trace)
        )

    def confirm_discard(self, doing: str) -> bool:
        """Ask Save / Discard / Cancel before an unsaved run is lost; True when it may go."""
        if not (self.ask_before_discarding and self.run_is_unsaved()):
            return True
        self.set_playing(False)
        buttons = QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel
        answer = QMessageBox.question(
            self,
            "memviz",
            f"The run has {len(self.trace)} steps that were not saved. Save the session before {doing}?",
            buttons,
            QMessageBox.Save,
        )
        if answer == QMessageBox.Save:
            return self.export_actions.save_session_dialog()
        return answer == QMessageBox.Discard
