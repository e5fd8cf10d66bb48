"""The panels' docks and their layout: one dock per panel class that supports the trace, a default
layout, and the layout each architecture was left in, saved in QSettings and restored.

A panel that fails (to build, to draw) is reported once and never breaks the window (`safe`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QByteArray, QObject, QSettings, Qt, Signal
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu

from memviz.core.trace import Trace
from memviz.panels import registry as panel_registry
from memviz.panels.base import Panel
from memviz.panels.view_model import ViewModel

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1
MIN_DOCK_WIDTH, MIN_DOCK_HEIGHT = 240, 160  # below this a panel's axes and labels overlap


RIGHT_SHARE = 0.5  # of the window's width: the right column of the two main pictures


class Docks(QObject):
    built = Signal()  # new panels were made (`panels` holds them)
    shown = Signal()  # a dock became visible: it needs a redraw

    def __init__(
        self,
        window: QMainWindow,
        view: ViewModel,
        settings: QSettings,
        menu: QMenu,
        report: Callable[[str], None],
    ) -> None:
        super().__init__(window)
        self.window, self.view, self.settings, self.menu = window, view, settings, menu
        self.report = report
        self.docks: dict[str, QDockWidget] = {}
        self.panels: dict[str, Panel] = {}
        self.arch: str | None = None  # the architecture the layout belongs to
        self._failures: set[tuple[str, str]] = set()
        self._followed: tuple | None = None  # what `follow` last checked
        self._trace: Trace | None = None  # the run the panels were made for
        # the class that takes a panel class' place (the compare view's B - A variants, placeholders)
        self.variant: Callable[[type[Panel]], type[Panel]] = lambda cls: cls
        self.rebuild_menu()

    # -- panels ---------------------------------------------------------------------------------
    def safe(self, panel: Panel, method: str, *args) -> None:
        """Call a panel; a failing panel is reported once and never breaks the window."""
        try:
            getattr(panel, method)(*args)
        except Exception:
            key = (panel.name, method)
            if key not in self._failures:
                self._failures.add(key)
                log.exception("panel %s: %s failed", panel.name, method)
                self.report(f"panel {panel.title}: {method} failed (see the log)")

    @staticmethod
    def _supports(cls: type[Panel], trace: Trace) -> bool:
        try:
            return bool(cls.supports(trace))
        except Exception:
            log.exception("panel %s: supports() failed", getattr(cls, "name", cls))
            return False

    def _wanted(self, trace: Trace | None) -> list[type[Panel]]:
        if trace is None:
            return []
        return [self.variant(cls) for cls in panel_registry.panel_classes() if self._supports(cls, trace)]

    def follow(self, trace: Trace | None) -> bool:
        """The run changed (it gained memory columns, a store was attached or detached): rebuild
        when the panels that support it are no longer the ones shown. True if it rebuilt.

        Cheap when nothing changed: the check runs again only when the trace's columns change."""
        key = (id(trace), None if trace is None else trace.column_names, self.arch)
        if key == self._followed:
            return False
        self._followed = key
        if [cls.name for cls in self._wanted(trace)] == list(self.docks):
            return False
        self.rebuild(trace)
        return True

    def rebuild(self, trace: Trace | None) -> None:
        """Docks for the panel classes that support `trace`; the layout saved for its architecture."""
        arch = trace.architecture if trace is not None else None
        wanted = self._wanted(trace)
        wanted_names = [cls.name for cls in wanted]
        if self.arch is not None and self.docks:
            self.save_layout()
        swapped = False
        for name in list(self.docks):
            dock = self.docks[name]
            if name not in wanted_names:
                self.window.removeDockWidget(dock)
                dock.deleteLater()
                del self.docks[name]
                del self.panels[name]
            elif type(self.panels[name]) not in wanted:  # another class in its place: the dock stays
                panel = self._make(wanted[wanted_names.index(name)])
                if panel is not None:
                    old = self.panels[name]
                    dock.setWidget(panel)
                    old.deleteLater()
                    self.panels[name] = panel
                    swapped = True
        # Another run (a reset, a model switch, a saved trace): every panel is made afresh in its
        # dock, so nothing of the previous run (its bars, axes, notes, spin boxes) can stay shown.
        renewed = trace is not self._trace and trace is not None
        self._trace = trace
        if renewed:
            for name, dock in self.docks.items():
                panel = self._make(type(self.panels[name]))
                if panel is not None:
                    old = self.panels[name]
                    dock.setWidget(panel)
                    old.deleteLater()
                    self.panels[name] = panel
        created = []
        for cls in wanted:
            if cls.name in self.docks:
                continue
            panel = self._make(cls)
            if panel is None:
                continue
            dock = QDockWidget(cls.title, self.window)
            dock.setObjectName(f"dock-{cls.name}")
            dock.setWidget(panel)
            dock.setMinimumSize(MIN_DOCK_WIDTH, MIN_DOCK_HEIGHT)  # never squeezed to a sliver
            dock.setFeatures(
                QDockWidget.DockWidgetMovable
                | QDockWidget.DockWidgetClosable
                | QDockWidget.DockWidgetFloatable
            )
            dock.visibilityChanged.connect(self._on_visibility)
            self.docks[cls.name] = dock
            self.panels[cls.name] = panel
            created.append(dock)
        kept = [d for d in self.docks.values() if d not in created]
        if created and arch == self.arch and kept:
            self._add_to_layout(created, kept)  # the run gained a panel: the layout stays as it is
        elif created or arch != self.arch:
            self.default_layout([self.docks[n] for n in wanted_names if n in self.docks])
            self.restore_layout(arch)
        self.arch = arch
        self._followed = (id(trace), None if trace is None else trace.column_names, arch)
        self.rebuild_menu()
        if created or renewed or swapped:
            self.built.emit()

    def _add_to_layout(self, created: list[QDockWidget], kept: list[QDockWidget]) -> None:
        """New docks during a run (the memory panel with the first recalled step): a tab in front
        of the last panel under the text, as in the default layout, and nothing else moves."""
        w = self.window
        bottom = [d for d in kept if w.dockWidgetArea(d) == Qt.BottomDockWidgetArea and not d.isFloating()]
        for dock in created:
            if bottom:
                w.tabifyDockWidget(bottom[-1], dock)
            else:
                w.addDockWidget(Qt.BottomDockWidgetArea, dock, Qt.Horizontal)
            dock.show()
            dock.raise_()

    def _make(self, cls: type[Panel]) -> Panel | None:
        try:
            panel = cls(self.view)
        except Exception:
            log.exception("panel %s failed to build", cls.name)
            self.report(f"panel {cls.title} could not be built (see the log)")
            return None
        self.safe(panel, "apply_theme", self.view.state)
        return panel

    def _on_visibility(self, visible: bool) -> None:
        if visible:
            self.shown.emit()

    def rebuild_menu(self) -> None:
        self.menu.clear()
        if not self.docks:
            empty = self.menu.addAction("(no panels for this model)")
            empty.setEnabled(False)
            return
        for dock in self.docks.values():
            self.menu.addAction(dock.toggleViewAction())

    # -- layout ---------------------------------------------------------------------------------
    def default_layout(self, docks: list[QDockWidget]) -> None:
        """The first two panels (the main pictures: gates and state, or attention and heads) in a
        full-height right column; the rest in a row under the text and the token strip."""
        if not docks:
            return
        w = self.window
        w.setCorner(Qt.BottomRightCorner, Qt.RightDockWidgetArea)
        w.setCorner(Qt.TopRightCorner, Qt.RightDockWidgetArea)
        right, bottom = docks[:2], docks[2:]
        for dock in right:
            w.addDockWidget(Qt.RightDockWidgetArea, dock, Qt.Vertical)
            dock.show()
        for dock in bottom[:2]:
            w.addDockWidget(Qt.BottomDockWidgetArea, dock, Qt.Horizontal)
            dock.show()
        for dock in bottom[2:]:  # a third panel (the memory) shares the last place, as a tab in front
            w.tabifyDockWidget(bottom[1], dock)
            dock.show()
            dock.raise_()
        bottom = bottom[:2]
        width, height = w.width(), w.height()
        w.resizeDocks(right, [int(width * RIGHT_SHARE)] * len(right), Qt.Horizontal)
        if len(right) > 1:  # the right column shared equally: no panel squeezed to its minimum
            w.resizeDocks(right, [height // len(right)] * len(right), Qt.Vertical)
        if bottom:
            w.resizeDocks(bottom, [int(height * 0.45)] * len(bottom), Qt.Vertical)
            if len(bottom) > 1:
                # the last (the next-token distribution) gets the larger share: its titles and token
                # texts need the width more than a heads heatmap does, the talk theme's fonts most
                rest = width * (1 - RIGHT_SHARE)
                shares = [0.42] + [0.58 / (len(bottom) - 1)] * (len(bottom) - 1)
                w.resizeDocks(bottom, [int(rest * f) for f in shares], Qt.Horizontal)

    def reset_layout(self) -> None:
        """The default layout again, exactly as a first run lays it out (same order, same sizes)."""
        order = [cls.name for cls in panel_registry.panel_classes()]
        docks = sorted(
            self.docks.values(),
            key=lambda d: order.index(d.objectName()[5:]) if d.objectName()[5:] in order else len(order),
        )
        for dock in docks:
            dock.setFloating(False)
            self.window.removeDockWidget(dock)
        self.default_layout(docks)
        for dock in docks:
            dock.show()

    def _key(self, arch: str | None) -> str:
        return f"layout/v{LAYOUT_VERSION}/{arch or 'none'}"

    def save_layout(self) -> None:
        self.settings.setValue(self._key(self.arch), self.window.saveState(LAYOUT_VERSION))

    def restore_layout(self, arch: str | None) -> bool:
        state = self.settings.value(self._key(arch))
        if isinstance(state, QByteArray | bytes) and state:
            return bool(self.window.restoreState(state, LAYOUT_VERSION))
        return False
