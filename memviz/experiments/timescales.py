"""Memory timescales of a recurrent model's units (issue 18, `memviz experiment timescales`).

A unit whose keep gate averages f̄ over a text multiplies what it holds by about f̄ a step, so a trace
of its input decays as f̄^t = exp(-t / tau) with the time constant tau = -1 / ln f̄ steps. The keep
gate is the LSTM's forget gate f (c' = f * c + i * g) or the GRU's update gate z in PyTorch's
convention (h' = (1 - z) * n + z * h: z keeps the old state).

The gates are read from a real run: the Trace's `gates` column [T, L, G, W] with the gate order in
the manifest's `gate_names`; layers narrower than the widest are padded there, and the padding is
cut off here (the manifest's `layer_sizes`). Qt-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from memviz.backends.hook_points import GATES, GRU_GATE_NAMES, LSTM_GATE_NAMES
from memviz.core.token_text import join_text
from memviz.errors import MemvizError
from memviz.experiments.registry import Experiment

if TYPE_CHECKING:  # the command line imports this module at every start: no torch, no trace here
    import argparse

    from memviz.core.trace import Trace

KEEP_GATE = {"lstm": "f", "gru": "z"}  # the gate that multiplies the old state, per cell
# -1/ln f̄ grows without bound as f̄ -> 1: above this many steps (f̄ > 0.99990) it is written as the cap
# (and `capped` says so). A run of a few thousand tokens cannot tell such units apart anyway.
TIME_CONSTANT_CAP = 10_000.0
HOLD_THRESHOLD = 0.9  # a unit "holds" on the steps where its keep gate is above this
SPAN_CHARS = 240  # the most characters of a hold's text kept in results.json

Progress = Callable[[int, int], object]


@dataclass
class LayerTimescales:
    """One layer's units (padding removed): their mean keep gate and time constant, and the
    longest run of steps with the gate above the threshold."""

    layer: int
    mean_gate: np.ndarray  # [H_l] float64
    time_constant: np.ndarray  # [H_l] steps, at most TIME_CONSTANT_CAP
    capped: np.ndarray  # [H_l] bool: -1/ln f̄ was above the cap (or f̄ = 1)
    hold_length: np.ndarray  # [H_l] steps in the longest run with gate > threshold (0: none)
    hold_start: np.ndarray  # [H_l] its first step (-1: none)

    @property
    def units(self) -> int:
        return len(self.mean_gate)


@dataclass
class Timescales:
    cell: str  # "lstm" or "gru"
    gate: str  # "f" or "z"
    steps: int  # the tokens the means are over
    threshold: float
    layers: list[LayerTimescales]

    def top_units(self, n: int) -> list[tuple[int, int]]:
        """(layer, unit) of the n longest time constants, longest first (ties: higher mean gate,
        then the longer hold, then layer and unit order)."""
        keys = [
            (-float(ly.time_constant[u]), -float(ly.mean_gate[u]), -int(ly.hold_length[u]), ly.layer, u)
            for ly in self.layers
            for u in range(ly.units)
        ]
        return [(layer, unit) for *_, layer, unit in sorted(keys)[: max(0, n)]]


def time_constants(mean_gate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-1 / ln f̄ per unit, capped at TIME_CONSTANT_CAP; and where the cap was applied."""
    f = np.clip(np.asarray(mean_gate, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        tau = np.where(f < 1.0, -1.0 / np.log(f), np.inf)  # f = 0 -> 0; f = 1 -> inf (not -1/+0)
    capped = ~(tau <= TIME_CONSTANT_CAP)
    return np.where(capped, TIME_CONSTANT_CAP, tau), capped


def longest_runs(above: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of a [T, H] boolean array: the longest run of True and its first row (-1: none;
    the earliest of equally long runs)."""
    T, H = above.shape
    lengths = np.zeros(H, dtype=np.int64)
    starts = np.full(H, -1, dtype=np.int64)
    padded = np.zeros((T + 2, H), dtype=np.int8)
    padded[1:-1] = above
    edges = np.diff(padded, axis=0)  # +1 where a run starts, -1 one past where it ends
    for u in range(H):
        run_starts = np.flatnonzero(edges[:, u] == 1)
        if run_starts.size == 0:
            continue
        run_lengths = np.flatnonzero(edges[:, u] == -1) - run_starts
        best = int(np.argmax(run_lengths))  # argmax: the first of the longest
        lengths[u], starts[u] = run_lengths[best], run_starts[best]
    return lengths, starts


def _gate_layout(trace: Trace) -> tuple[str, str, int, list[int]]:
    """(cell, keep gate name, its index in the gates column, each layer's width)."""
    model = trace.model
    if trace.kind != "recurrent":
        raise MemvizError(
            f"{model.get('name', 'this model')} is a transformer: timescales reads a recurrent model's "
            "keep gates (an LSTM's forget gate, a GRU's update gate)"
        )
    cell = model.get("cell") or model.get("architecture", "")
    if cell not in KEEP_GATE:
        raise MemvizError(f"{model.get('name', 'this model')}: no keep gate known for cell {cell!r}")
    default_names = LSTM_GATE_NAMES if cell == "lstm" else GRU_GATE_NAMES
    names = list(model.get("gate_names") or default_names)
    gate = KEEP_GATE[cell]
    if gate not in names:
        raise MemvizError(f"{model.get('name')}: the trace's gates {names} have no {gate!r} gate")
    sizes = [int(s) for s in model.get("layer_sizes") or [model["hidden_size"]] * model["num_layers"]]
    if not trace.has(GATES):
        raise MemvizError(f"{model.get('name')}: the trace holds no gates")
    return cell, gate, names.index(gate), sizes


def trace_timescales(trace: Trace, threshold: float = HOLD_THRESHOLD) -> Timescales:
    """Every unit's mean keep gate over the trace's steps and its time constant."""
    cell, gate, index, sizes = _gate_layout(trace)
    if len(trace) == 0:
        raise MemvizError("timescales: the run read no tokens")
    gates = trace.array(GATES)  # [T, L, G, W]
    layers = []
    for layer, width in enumerate(sizes):
        keep = np.asarray(gates[:, layer, index, :width], dtype=np.float64)  # padding cut off
        mean = keep.mean(axis=0)
        tau, capped = time_constants(mean)
        length, start = longest_runs(keep > threshold)
        layers.append(LayerTimescales(layer, mean, tau, capped, length, start))
    return Timescales(cell=cell, gate=gate, steps=len(trace), threshold=threshold, layers=layers)


def span_text(trace: Trace, start: int, stop: int, limit: int = SPAN_CHARS) -> str:
    """The text of steps start..stop-1 (a word model's words with spaces between), at most `limit`
    characters: a longer one keeps its start and end around an ellipsis."""
    if start < 0 or stop <= start:
        return ""
    pieces = trace.token_bytes[start:stop]
    if trace.model.get("tokenizer") == "word":
        text = " ".join(join_text([piece]) for piece in pieces)
    else:
        text = join_text(pieces)
    if len(text) > limit:
        half = (limit - 1) // 2
        text = text[:half] + "…" + text[len(text) - (limit - 1 - half) :]
    return text


def read_text(
    backend,
    text: str,
    max_tokens: int | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[Trace, list[str]]:
    """A Session over `text` (a transformer refused before it reads); the trace and its warnings."""
    from memviz.core.session import MAX_TOKENS, Session

    if backend.info.kind != "recurrent":
        raise MemvizError(
            f"{backend.info.name} is a transformer: timescales reads a recurrent model's keep gates "
            "(an LSTM's forget gate, a GRU's update gate)"
        )
    session = Session(backend, max_tokens=max_tokens or MAX_TOKENS)
    warnings = list(session.feed(text))
    total = session.pending
    session.run(
        progress=(lambda done: progress(done, total)) if progress is not None else None,
        cancelled=cancelled,
    )
    if cancelled is not None and cancelled():
        raise MemvizError("timescales: cancelled")
    return session.trace, warnings


def unit_summary(trace: Trace, ts: Timescales, layer: int, unit: int) -> dict:
    """What results.json says of one unit: its gate, time constant and the text where it holds longest."""
    ly = ts.layers[layer]
    start, length = int(ly.hold_start[unit]), int(ly.hold_length[unit])
    return {
        "layer": layer,
        "unit": unit,
        "mean_gate": float(ly.mean_gate[unit]),
        "time_constant": float(ly.time_constant[unit]),
        "capped": bool(ly.capped[unit]),
        "hold_start": start,
        "hold_steps": length,
        "hold_text": span_text(trace, start, start + length),
    }


# -- the experiment ------------------------------------------------------------------------------------
COLUMNS = {
    "model": "the model (its name; results.json has its fingerprint)",
    "layer": "the recurrent layer, from 0 at the input",
    "unit": "the unit within its layer (padding of narrower layers excluded)",
    "gate": "the keep gate averaged: f (LSTM forget gate) or z (GRU update gate, h' = (1-z) n + z h)",
    "mean_gate": "the keep gate's mean over every step of the text",
    "time_constant": f"-1/ln(mean_gate) in steps (tokens), at most {TIME_CONSTANT_CAP:g}",
    "capped": f"1 where -1/ln(mean_gate) exceeds {TIME_CONSTANT_CAP:g} steps (mean_gate > 0.9999) or is infinite",
    "hold_steps": "the longest run of consecutive steps with the keep gate above the threshold",
    "hold_start": "the first step of that run (-1: the gate never exceeds the threshold)",
    "rank": "1 for the longest time constant of the model, 2 for the next, ...",
}
HIST_BINS_PER_DECADE = 5
HIST_LOW = 0.1  # steps: the histogram's first edge (shorter time constants counted in its first bin)


def histogram_edges() -> list[float]:
    """Log-spaced bin edges from HIST_LOW to TIME_CONSTANT_CAP (the cap is the last edge)."""
    decades = math.log10(TIME_CONSTANT_CAP / HIST_LOW)
    n = int(round(decades * HIST_BINS_PER_DECADE))
    return [float(v) for v in np.logspace(math.log10(HIST_LOW), math.log10(TIME_CONSTANT_CAP), n + 1)]


def histogram(time_constant: np.ndarray, edges: list[float]) -> list[int]:
    """Units per bin; below the first edge in the first bin, capped ones in the last."""
    clipped = np.clip(np.asarray(time_constant, dtype=np.float64), edges[0], edges[-1])
    counts, _ = np.histogram(clipped, bins=np.asarray(edges))
    return [int(c) for c in counts]


def model_rows(name: str, ts: Timescales) -> list[dict]:
    ranks = {unit: r + 1 for r, unit in enumerate(ts.top_units(sum(ly.units for ly in ts.layers)))}
    return [
        {
            "model": name,
            "layer": ly.layer,
            "unit": u,
            "gate": ts.gate,
            "mean_gate": float(ly.mean_gate[u]),
            "time_constant": float(ly.time_constant[u]),
            "capped": bool(ly.capped[u]),
            "hold_steps": int(ly.hold_length[u]),
            "hold_start": int(ly.hold_start[u]),
            "rank": ranks[(ly.layer, u)],
        }
        for ly in ts.layers
        for u in range(ly.units)
    ]


def model_extra(trace: Trace, ts: Timescales, top: int) -> dict:
    """results.json's part for one model: per-layer histograms and the top units with their text."""
    edges = histogram_edges()
    return {
        "cell": ts.cell,
        "gate": ts.gate,
        "tokenizer": trace.model.get("tokenizer", "char"),  # what a step is: a character, a word
        "steps": ts.steps,
        "layers": [
            {
                "layer": ly.layer,
                "units": ly.units,
                "histogram": histogram(ly.time_constant, edges),
                "median_time_constant": float(np.median(ly.time_constant)),
                "capped": int(ly.capped.sum()),
            }
            for ly in ts.layers
        ],
        "top_units": [unit_summary(trace, ts, layer, unit) for layer, unit in ts.top_units(top)],
    }


def run(backends: list, args: argparse.Namespace):
    from memviz.experiments.models import model_entry, unique_names
    from memviz.experiments.progress import progress_of
    from memviz.experiments.result import ExperimentResult

    for backend in backends:  # every model checked before any reads: one line, nothing run
        if backend.info.kind != "recurrent":
            raise MemvizError(
                f"{backend.info.name} is a transformer: timescales reads a recurrent model's keep gates "
                "(an LSTM's forget gate, a GRU's update gate)"
            )
    if not 0 < args.threshold < 1:
        raise MemvizError(f"--threshold must be between 0 and 1, got {args.threshold}")
    progress = progress_of(args)
    cancelled = getattr(args, "cancelled", None)
    names = unique_names(backends)
    rows: list[dict] = []
    extra: dict = {"bins": histogram_edges(), "per_model": {}}
    warnings: dict[str, list[str]] = {}
    for name, backend in zip(names, backends, strict=True):
        trace, said = read_text(
            backend,
            args.text,
            max_tokens=args.max_tokens,
            progress=lambda done, total, name=name: progress(f"{name}: reading", done, total),
            cancelled=cancelled,
        )
        for w in said:
            progress.note(f"memviz: warning: {name}: {w}")
        warnings[name] = said
        ts = trace_timescales(trace, threshold=args.threshold)
        rows += model_rows(name, ts)
        extra["per_model"][name] = model_extra(trace, ts, args.top)
    settings = {
        "threshold": args.threshold,
        "top": args.top,
        "max_tokens": args.max_tokens,
        "time_constant_cap": TIME_CONSTANT_CAP,
        "time_constant": "-1 / ln(mean keep gate) steps; the mean over every step of the text",
        "keep_gate": {"lstm": "f (forget gate)", "gru": "z (update gate; h' = (1-z) n + z h)"},
        "warnings": warnings,
    }
    models = [model_entry(b, name) for b, name in zip(backends, names, strict=True)]
    return ExperimentResult("timescales", settings, models, dict(COLUMNS), rows, extra)


def add_options(parser: argparse.ArgumentParser) -> None:
    from memviz.options import integer, real

    parser.add_argument(
        "--threshold",
        type=real(0.0, 1.0, low_open=True),
        default=HOLD_THRESHOLD,
        help=f"a unit holds on steps with its keep gate above this (default {HOLD_THRESHOLD})",
    )
    parser.add_argument(
        "--top", type=integer(0, 10_000), default=20, help="units listed with their text (default 20)"
    )
    parser.add_argument(
        "--max-tokens",
        type=integer(1, 10**6),
        default=20_000,
        help="read at most this many tokens of the text (default 20,000)",
    )


EXPERIMENT = Experiment(
    name="timescales",
    help="recurrent models: each unit's mean keep gate (LSTM f, GRU z) and time constant -1/ln f",
    run=run,
    figure="memviz.export.experiment_figures_timescales:TimescalesFigure",
    add_options=add_options,
    needs_text=True,
)
