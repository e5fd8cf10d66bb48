"""A trace's token labels as a live sequence: what axes, tooltips and the token strip write.

`Trace.token_labels` builds a new list at each call; an axis given that list at `set_trace` would not
see the steps a live run appends. `TokenLabels` reads the trace's bytes on demand instead (the trace
only grows), so it can be handed over once, like `trace.token_text` was, and each label is decoded
once (partial UTF-8 characters as `‹C3›`, memviz.core.token_text).
"""

from __future__ import annotations

from collections.abc import Sequence

from memviz.core.token_text import token_display
from memviz.core.trace import Trace


class TokenLabels(Sequence[str]):
    """`trace.token_label(i)` for every step of a (growing) trace, remembered once decoded."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self._done: dict[int, str] = {}  # decoded so far (a note asks for one label of a long run)

    def __len__(self) -> int:
        return len(self.trace)

    def __getitem__(self, index):  # int or slice, as a list
        n = len(self.trace)
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(n))]
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(index)
        label = self._done.get(index)
        if label is None:
            label = self._done[index] = token_display(self.trace.token_bytes[index])
        return label


def live_labels(trace: Trace | None) -> Sequence[str]:
    """The token labels of `trace` (empty without one)."""
    return () if trace is None else TokenLabels(trace)
