"""Colormaps that fit the data.

Sequential maps (viridis, inferno) for quantities in [0, 1]: gates, attention, retention.
A diverging map (ColorBrewer RdBu, reversed so that negative is blue and positive is red) for
quantities around 0: cell state, hidden state, the candidate gate g; always with symmetric levels.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pyqtgraph as pg

# ColorBrewer RdBu (11 classes), from negative (blue) to positive (red).
_RDBU = [
    "#053061",
    "#2166ac",
    "#4393c3",
    "#92c5de",
    "#d1e5f0",
    "#f7f7f7",
    "#fddbc7",
    "#f4a582",
    "#d6604d",
    "#b2182b",
    "#67001f",
]

SEQUENTIAL = "viridis"
DIVERGING = "RdBu"


@cache
def colormap(name: str) -> pg.ColorMap:
    """A pyqtgraph ColorMap by name: 'RdBu' (diverging) or any pyqtgraph bundled map ('viridis', 'inferno')."""
    if name == "RdBu":
        colors = [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in _RDBU]
        return pg.ColorMap(np.linspace(0.0, 1.0, len(colors)), colors, name="RdBu")
    return pg.colormap.get(name)


@cache
def lookup_table(name: str, n: int = 256) -> np.ndarray:
    """uint8 [n, 4] RGBA lookup table for ImageItem."""
    table = colormap(name).getLookupTable(0.0, 1.0, n, alpha=True)
    table.setflags(write=False)
    return table


def is_diverging(name: str) -> bool:
    return name == "RdBu"


def symmetric_level(values: np.ndarray, floor: float = 1e-6) -> float:
    """A symmetric level for a diverging map: max |value| rounded up to a 1-2-5 step.

    Rounding keeps the level (and so the colours) stable while a trace grows.
    """
    peak = float(np.nanmax(np.abs(values))) if np.size(values) else 0.0
    return nice_ceiling(max(peak, floor))


def nice_ceiling(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is >= x (x > 0)."""
    if not x > 0 or not math.isfinite(x):
        return 1.0
    exponent = math.floor(math.log10(x))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        value = step * 10.0**exponent
        if value >= x * (1 - 1e-12):
            return value
    return 10.0 ** (exponent + 1)
