"""The window's long-term memory wiring: the Memory settings dock, a new store or new recall
settings restarting the run, finished runs remembered, `--memory` opened once the model is there.
A mixin for MainWindow (it uses the window's worker, playback and messages)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget


class MemoryWiring:
    """MainWindow's memory slots: `memory_controls`, `memory_dock` and what they restart."""

    def _build_memory_dock(self) -> None:
        """Long-term memory settings: store, add documents, k / lambda / temperature, remember runs."""
        from memviz.ui.memory_controls import MemoryControls

        self.memory_controls = controls = MemoryControls(self.worker)  # its jobs run on the worker
        dock = QDockWidget("Memory settings", self)
        dock.setObjectName("dock_memory_settings")
        dock.setWidget(controls)
        self.addDockWidget(Qt.LeftDockWidgetArea, dock)
        dock.hide()  # opened from View -> Memory settings, or by picking a store
        self.memory_dock = dock
        controls.storeChanged.connect(self._on_memory_changed)
        controls.recallChanged.connect(self._on_recall_changed)
        controls.busyChanged.connect(self.playback.set_busy)
        controls.error.connect(self.message)
        controls.summary.connect(self.message)
        self.playback.run_ended.connect(self._remember_run)
        action = dock.toggleViewAction()
        action.setText("Memory settings")
        self.view_menu.addAction(action)

    def _remember_run(self, _reason: str) -> None:
        self.memory_controls.remember(self.worker.session)

    def _on_recall_changed(self, _recall) -> None:
        self._on_memory_changed(self.memory_controls.store)

    def _on_memory_changed(self, store) -> None:
        """A new store or new recall settings: the worker restarts the run with them (and the
        panels follow the new run: the memory panel comes with its first recalled step)."""
        self.playback.set_memory(store, self.memory_controls.recall)
        self.message(
            "long-term memory off" if store is None else f"recalling from {store.path} (run restarted)"
        )

    def open_memory(self, path: str | Path) -> None:
        """Recall from the store at `path` once the model is loaded (`memviz gui --memory`); a store
        of another model is refused with a clear error."""
        if self.info is not None and self._loading is None:
            self._open_memory_now(str(path))
        else:
            self._memory_after_load = str(path)

    def _open_memory_now(self, path: str) -> None:
        self.memory_controls.open_store(
            path,
            create=False,
            on_failed=lambda reason: self.show_error("Could not open the memory store", reason),
        )
