"""A token's text for a panel: a candidate's text from the trace, a token made visible on an axis or
in a tooltip (newlines, tabs and spaces shown), a step's label. Split out of heatmap.py (issue 14)."""

from __future__ import annotations

from collections.abc import Sequence

from memviz.core.trace import Trace


def candidate_text(trace: Trace | None, token_id: int, known: dict[int, str] | None = None) -> str:
    """A candidate token's text: from the trace's vocabulary, else from `known`, else '#id'."""
    text = trace.text_of(token_id) if trace is not None else None
    if text is None and known:
        text = known.get(int(token_id))
    return f"#{int(token_id)}" if text is None else text


def show_token(text: str, limit: int = 12) -> str:
    """A token's text made visible on an axis or in a tooltip: newlines, tabs and spaces shown."""
    shown = text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r").replace(" ", "\u2423")
    if len(shown) > limit:
        shown = shown[: limit - 1] + "\u2026"
    return shown or "\u2205"


def token_label(tokens: Sequence[str], index: int) -> str:
    if 0 <= index < len(tokens):
        return f"{index} '{show_token(tokens[index], 24)}'"
    return str(index)
