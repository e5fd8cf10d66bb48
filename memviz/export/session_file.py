"""Saved sessions: a `.memviz` trace with the view state inside, so a talk replays with no model.

A session file is a trace file (format 1) whose manifest has one more key, `view_state` (DESIGN.md
allows added keys; any memviz reads the file as a plain trace, and `Trace.load` keeps the key in
`trace.extra_manifest`, so a window handed only the loaded Trace can still restore the view).
It holds the ViewState fields and, optionally, app extras (panel layout, window geometry) under
"extra". Opening needs no model: everything drawn comes from the trace.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from memviz.core.trace import Trace

VIEW_KEY = "view_state"
SESSION_VERSION = 1


@dataclass
class SavedSession:
    trace: Trace
    state: object  # memviz.core.view.ViewState
    extra: dict = field(default_factory=dict)
    has_view: bool = True  # False when the file was a plain trace


def state_to_dict(state) -> dict:
    return asdict(state)


def state_from_dict(data: dict):
    from memviz.core.view import SCALES, THEMES, ViewState

    known = {f.name: f for f in fields(ViewState)}
    values = {}
    for key, value in (data or {}).items():
        if key not in known:
            continue  # a newer memviz's field: ignored
        default = getattr(ViewState(), key)
        if isinstance(default, bool):
            value = bool(value)
        elif isinstance(default, int):
            try:
                value = int(value)
            except (TypeError, ValueError):
                continue
        elif isinstance(default, str):
            value = str(value)
        values[key] = value
    if values.get("theme") not in THEMES:
        values.pop("theme", None)
    if values.get("scale") not in SCALES:  # an old file (none saved) or an unknown scale: the default
        values.pop("scale", None)
    return ViewState(**values)


def save_session(path: str | os.PathLike, trace: Trace, state, extra: dict | None = None) -> Path:
    """Write trace + view state at exactly `path`, atomically."""
    payload = {"session_version": SESSION_VERSION, "view": state_to_dict(state), "extra": dict(extra or {})}
    previous = trace.extra_manifest.get(VIEW_KEY)
    trace.extra_manifest[VIEW_KEY] = payload  # written into the trace's manifest, then put back
    try:
        return trace.save(path)
    finally:
        if previous is None:
            trace.extra_manifest.pop(VIEW_KEY, None)
        else:
            trace.extra_manifest[VIEW_KEY] = previous


def saved_view(trace: Trace):
    """(ViewState, extra) saved with this trace, or None for a plain trace."""
    payload = trace.extra_manifest.get(VIEW_KEY)
    if not isinstance(payload, dict):
        return None
    state = state_from_dict(payload.get("view") if isinstance(payload.get("view"), dict) else {})
    if len(trace) == 0:
        state = replace(state, cursor=-1)
    elif not 0 <= state.cursor < len(trace):
        state = replace(state, cursor=len(trace) - 1)
    extra = payload.get("extra") if isinstance(payload.get("extra"), dict) else {}
    return state, extra


def load_session(path: str | os.PathLike) -> SavedSession:
    """A session file, or a plain trace file (then the view starts at the last step)."""
    from memviz.core.view import ViewState

    trace = Trace.load(path)  # checks the file and the format, never unpickles
    saved = saved_view(trace)
    if saved is None:
        return SavedSession(trace, ViewState(cursor=len(trace) - 1), {}, has_view=False)
    return SavedSession(trace, saved[0], saved[1], has_view=True)
