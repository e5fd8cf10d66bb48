"""The main window's slots for the Experiments window (Run -> Experiments..., File -> Open
experiment results...): one window, made on first use, handed the app's theme and model."""

from __future__ import annotations

from pathlib import Path


class ExperimentsWiring:
    """Mixed into MainWindow: `experiments_window` is None until first shown."""

    experiments_window = None

    def show_experiments(self):
        """Show the Experiments window (non-modal), the app's model first in its list."""
        from memviz.ui.experiments_window import ExperimentsWindow

        window = self.experiments_window
        if window is None:
            window = ExperimentsWindow(self.settings, self.view, self.model_spec, parent=self)
            self.experiments_window = window
        elif self.model_spec and not window.running and not window.models():
            window.add_model(self.model_spec)
        window.show()
        window.raise_()
        window.activateWindow()
        return window

    def open_experiment_results(self, folder: str | Path | None = None):
        """A saved experiment folder in the Experiments window (asked for when not given)."""
        window = self.show_experiments()
        if folder is None:
            window.open_results_dialog()
            return None
        return window.open_results(folder)

    def shutdown_experiments(self) -> None:
        if self.experiments_window is not None:
            self.experiments_window.shutdown()
