"""How a heatmap chooses its colour levels (ViewState.scale), so colours mean the same from step to step.

- "stable" (the default): the levels a panel asks for, widened to every range asked for so far in
  this run (per layer, for panels that show one layer): they only grow, so a colour never shifts
  while steps come or when the cursor goes back. A new trace starts again.
- "fixed": the quantity's natural range, the same at every step: probabilities, attention and
  sigmoid gates 0..1, tanh values -1..1 (the levels a heatmap is built with), cell states
  symmetric around the run's largest |c|, attention distances 0..the longest distance the run
  allows. Computed over the whole trace, new steps only.
- "step": each step's own range, as the panel asks (colours can shift at every step).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from memviz.core.trace import Trace
from memviz.panels import colormaps

Levels = tuple[float, float]


class CellPeak:
    """Per layer, the largest |c| over the trace's cell states (new steps only): levels +-that."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}
        self.peak: dict[int, float] = {}

    def __call__(self, trace: Trace, layer: int) -> Levels | None:
        if not trace.has("cell"):
            return None
        column = trace.array("cell")
        layer = min(max(layer, 0), column.shape[1] - 1)
        start = self.seen.get(layer, 0)
        if start < len(column):
            new = column[start:, layer]
            finite = new[np.isfinite(new)]
            peak = float(np.abs(finite).max()) if finite.size else 0.0
            self.peak[layer] = max(self.peak.get(layer, 0.0), peak)
            self.seen[layer] = len(column)
        level = colormaps.symmetric_level(np.array([self.peak.get(layer, 0.0)]))
        return (-level, level)


def distance_range(trace: Trace, _layer: int) -> Levels:
    """0..the longest distance a query can look back in this run (its length - 1, or the model's
    sliding window when it has one)."""
    longest = max(len(trace) - 1, 1)
    window = trace.model.get("sliding_window")
    if isinstance(window, int) and window > 0:
        longest = min(longest, window)
    return (0.0, colormaps.nice_ceiling(float(longest)))


# a heatmap's value name -> its natural range when that depends on the run; any other quantity's
# natural range is the levels its heatmap is built with (0..1 or -1..1)
NATURAL: dict[str, Callable[[], Callable[[Trace, int], Levels | None]]] = {
    "c": CellPeak,
    "distance": lambda: distance_range,
}


class ColourScale:
    """The levels one heatmap colours with, given what its panel asks for (`levels`)."""

    def __init__(self, built: Levels, value_name: str) -> None:
        self.built = built  # the levels the heatmap was built with: the natural range by default
        self.mode = "stable"
        self.context: object = 0  # the layer shown, for panels that show one
        self._make_natural = NATURAL.get(value_name)
        self.natural = self._make_natural() if self._make_natural else None
        self._held: dict[object, Levels] = {}
        self._fixed: Levels = built

    def reset(self) -> None:
        """A new trace: forget the levels held, and the run-dependent natural range."""
        self._held.clear()
        self.natural = self._make_natural() if self._make_natural else None
        self._fixed = self.built

    def begin(self, mode: str, context: object, trace: Trace | None) -> None:
        """Before a render: the view's scale, the layer shown and the trace."""
        if mode != self.mode:
            self._held.clear()
            self.mode = mode
        self.context = context
        if mode == "fixed" and self.natural is not None and trace is not None and len(trace):
            self._fixed = self.natural(trace, context if isinstance(context, int) else 0) or self.built

    def levels(self, asked: Levels | None) -> Levels | None:
        """The levels to colour with (None: keep the current ones)."""
        if self.mode == "fixed":
            return self._fixed
        if asked is None or self.mode == "step":
            return asked
        lo, hi = float(asked[0]), float(asked[1])
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return asked
        held = self._held.get(self.context)
        if held is not None:
            lo, hi = min(lo, held[0]), max(hi, held[1])
        self._held[self.context] = (lo, hi)
        return (lo, hi)
