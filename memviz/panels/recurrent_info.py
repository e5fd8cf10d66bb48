"""What the recurrent panels need to know about a trace's cell: its gates and each layer's real width.

A recurrent trace's manifest names its cell (`cell`: "lstm" or "gru"), its gates in the order of the
`gates` column's gate axis (`gate_names`) and each layer's size (`layer_sizes`). Internals are padded
to the widest layer: units at or beyond a layer's size are zeros that are not part of the model, so
the panels show only the first `layer_size(...)` units of a layer. Traces from before these fields
are LSTMs with equal layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from memviz.core.trace import Trace
from memviz.panels import colormaps

LSTM_GATES = ("i", "f", "g", "o")


@dataclass(frozen=True)
class Gate:
    letter: str
    label: str  # for titles: "forget gate"
    cmap: str
    levels: tuple[float, float]  # the gate's natural range (sigmoid 0..1, tanh -1..1)


_SIGMOID, _TANH = (0.0, 1.0), (-1.0, 1.0)
GATES: dict[str, Gate] = {
    g.letter: g
    for g in (
        Gate("i", "input gate", colormaps.SEQUENTIAL, _SIGMOID),
        Gate("f", "forget gate", colormaps.SEQUENTIAL, _SIGMOID),
        Gate("g", "candidate g (tanh)", colormaps.DIVERGING, _TANH),
        Gate("o", "output gate", colormaps.SEQUENTIAL, _SIGMOID),
        Gate("r", "reset gate", colormaps.SEQUENTIAL, _SIGMOID),
        Gate("z", "update gate", colormaps.SEQUENTIAL, _SIGMOID),
        Gate("n", "candidate n (tanh)", colormaps.DIVERGING, _TANH),
    )
}


def cell_of(trace: Trace | None) -> str:
    """ "lstm" or "gru" (an old trace: its architecture, else "lstm")."""
    if trace is None:
        return "lstm"
    cell = trace.model.get("cell") or trace.architecture
    return cell if cell in ("lstm", "gru") else "lstm"


def gates_of(trace: Trace | None) -> tuple[Gate, ...]:
    """The gates in the order of the trace's gate axis (i, f, g, o for traces that do not say)."""
    names = (trace.model.get("gate_names") if trace is not None else None) or LSTM_GATES
    return tuple(GATES.get(str(n), Gate(str(n), f"gate {n}", colormaps.SEQUENTIAL, _SIGMOID)) for n in names)


def layer_size(trace: Trace | None, layer: int, width: int) -> int:
    """How many of the `width` (padded) units of `layer` are real."""
    sizes = trace.model.get("layer_sizes") if trace is not None else None
    if isinstance(sizes, (list, tuple)) and 0 <= layer < len(sizes):
        try:
            return max(1, min(int(sizes[layer]), width))
        except (TypeError, ValueError):
            return width
    return width
