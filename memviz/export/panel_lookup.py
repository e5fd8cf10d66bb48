"""Which panel a figure draws: the registered panel classes, those that show a trace, one by name
(a clear error naming the valid ones otherwise). Split out of render.py (issue 14)."""

from __future__ import annotations

from collections.abc import Iterable

from memviz.core.trace import Trace
from memviz.errors import MemvizError


def all_panel_classes() -> list:
    from memviz.panels.registry import panel_classes

    return panel_classes()


def supported_panel_classes(trace: Trace, classes: Iterable | None = None) -> list:
    return [cls for cls in (all_panel_classes() if classes is None else classes) if cls.supports(trace)]


def panel_class(name: str, trace: Trace | None = None, classes: Iterable | None = None):
    """The panel class called `name`; a clear error naming the valid ones otherwise."""
    classes = list(all_panel_classes() if classes is None else classes)
    by_name = {cls.name: cls for cls in classes}
    if name not in by_name:
        valid = ", ".join(sorted(by_name)) or "none registered"
        raise MemvizError(f"unknown panel '{name}'; panels: {valid}")
    cls = by_name[name]
    if trace is not None and not cls.supports(trace):
        fits = ", ".join(c.name for c in classes if c.supports(trace)) or "none"
        raise MemvizError(
            f"panel '{name}' does not show {trace.architecture or 'this'} traces "
            f"(it shows {', '.join(cls.architectures)}); panels for this trace: {fits}"
        )
    return cls
