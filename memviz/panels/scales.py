"""How a heatmap chooses its colour levels (ViewState.scale), so colours mean the same from step to step.

- "stable" (the default): the levels a panel asks for, widened to every range asked for so far in
  this run (per layer, for panels that show one layer): they only grow, so a colour never shifts
  while steps come or when the cursor goes back. A new trace starts again.
- "fixed": the quantity's natural range, the same at every step: probabilities, attention and
  sigmoid gates 0..1, tanh values -1..1 (the levels a heatmap is built with), cell states
  symmetric around the run's largest |c|, attention distances 0..the longest distance the run
  allows. Computed over the whole trace, new steps only.
- "step": each step's own range, as the panel asks (colours can shift at every step).

A difference of two runs (memviz.core.trace_diff, the app's B - A view) is coloured with the
diverging map and levels symmetric around 0 whatever the quantity: "stable" the largest |B - A| so
far, "fixed" the widest difference the quantity allows (its natural range's width each way: +-1 for
probabilities, +-2 for tanh values), "step" each step's own largest |B - A|.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from memviz.core.trace import Trace
from memviz.core.trace_diff import is_difference
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
        self.difference = False  # the trace is a difference of two runs: symmetric around 0
        self._left_difference = False

    def reset(self) -> None:
        """A new trace: forget the levels held, and the run-dependent natural range."""
        self._held.clear()
        self.natural = self._make_natural() if self._make_natural else None
        self._fixed = self.built

    def begin(self, mode: str, context: object, trace: Trace | None) -> None:
        """Before a render: the view's scale, the layer shown and the trace."""
        difference = is_difference(trace)
        if mode != self.mode or difference != self.difference:
            self._held.clear()
            self._left_difference = self.difference and not difference
            self.mode = mode
            self.difference = difference
        self.context = context
        if mode == "fixed" and self.natural is not None and trace is not None and len(trace):
            self._fixed = self.natural(trace, context if isinstance(context, int) else 0) or self.built

    def levels(self, asked: Levels | None, data: np.ndarray | None = None) -> Levels | None:
        """The levels to colour with (None: keep the current ones). `data`: the values about to be
        shown, which set the levels of a difference."""
        if self.difference:
            return self._difference_levels(data)
        if self._left_difference:  # back from B - A: a panel that asks for none gets its own again
            self._left_difference = False
            asked = self.built if asked is None else asked
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

    def _difference_levels(self, data: np.ndarray | None) -> Levels:
        """Symmetric levels around 0 for B - A (see the module's docstring)."""
        if self.mode == "fixed":
            width = float(self.built[1]) - float(self.built[0])
            if self._fixed != self.built:  # a run-dependent natural range (|c|, distances)
                width = float(self._fixed[1]) - float(self._fixed[0])
            level = colormaps.nice_ceiling(width)
            return (-level, level)
        peak = 0.0
        if data is not None and np.size(data):
            finite = np.abs(data[np.isfinite(data)])
            peak = float(finite.max()) if finite.size else 0.0
        if self.mode == "stable":
            held = self._held.get(self.context)
            peak = max(peak, held[1] if held is not None else 0.0)
        if peak == 0.0:  # no difference at all: the quantity's own width, so 0 reads as 0, not noise
            level = colormaps.nice_ceiling(float(self.built[1]) - float(self.built[0]))
        else:
            level = colormaps.symmetric_level(np.array([peak]))
        if self.mode == "stable" and peak > 0.0:
            self._held[self.context] = (-level, level)
        return (-level, level)
