"""What tints the token strip: the signals a trace offers, each token's value of one, and how values
map to tint strengths and to the legend's scale (numbers only, no painting)."""

from __future__ import annotations

import numpy as np

from memviz.core.trace import Trace
from memviz.core.view import ViewState

#: signal name -> (label, scale kind). "sequential": [0, 1]; "diverging": signed around 0.
SIGNALS: dict[str, tuple[str, str]] = {
    "none": ("No tint", "none"),
    "unit": ("Unit: hidden state h", "diverging"),
    "cell": ("Unit: cell state c", "diverging"),
    "attention": ("Attention of the current token", "sequential"),
    "memory": ("Memory similarity", "sequential"),
    # a classifier's answer after each token: one label's probability around 0.5, or the likeliest label
    "prediction": ("Prediction", "prediction"),
}


def available_signals(trace: Trace | None) -> list[str]:
    """The signals this trace can tint by (known from the model even before the first step)."""
    names = ["none"]
    if trace is None:
        return names
    recurrent = trace.kind == "recurrent"
    if recurrent or trace.has("hidden"):
        names.append("unit")
    if (recurrent and trace.model.get("cell", "lstm") == "lstm") or trace.has("cell"):  # a GRU has no c
        names.append("cell")
    if trace.kind == "transformer" or trace.has("attention"):
        names.append("attention")
    if trace.memory is not None or trace.has("memory_scores"):
        names.append("memory")
    if trace.has("prediction") or trace.model.get("head") == "classifier":
        names.append("prediction")
    return names


def display_text(token: str) -> str:
    """What a token looks like in the strip: whitespace made visible where it would vanish."""
    if token == "":
        return "\u00b7"
    shown = token.replace("\r", "").replace("\t", "\u2192").replace("\n", "\u21b5")
    return shown if shown else "\u00b7"


def signal_values(trace: Trace | None, state: ViewState, signal: str | None = None) -> np.ndarray:
    """Per-token values of the signal (NaN = no value for that token), straight from the trace.

    - "unit": hidden[t, layer, unit]; "cell": cell[t, layer, unit] (LSTM)
    - "attention": attention of the step at the cursor (layer, head) over tokens 0..cursor
    - "memory": the best memory score (max over the retrieved ones) at each step
    - "prediction": a classifier's probability of its one label, or of its likeliest label
      (`prediction_classes` says which) after each step
    """
    signal = signal or state.signal
    T = 0 if trace is None else len(trace)
    out = np.full(T, np.nan, dtype=np.float64)
    if trace is None or T == 0:
        return out
    try:
        if signal in ("unit", "cell"):
            key = "hidden" if signal == "unit" else "cell"
            if trace.has(key):
                column = trace.array(key)[:T]
                layer = min(max(state.layer, 0), column.shape[1] - 1)
                unit = min(max(state.unit, 0), column.shape[2] - 1)
                out[: len(column)] = column[:, layer, unit]
        elif signal == "attention":
            t = min(state.cursor, T - 1)
            if t >= 0 and trace.has("attention"):
                layers, heads = trace.attention_shape
                layer = min(max(state.layer, 0), layers - 1)
                head = min(max(state.head, 0), heads - 1)
                out[: t + 1] = trace.attention_row(t, layer, head)
        elif signal == "memory":
            if trace.has("memory_scores"):
                scores = trace.array("memory_scores")[:T].astype(np.float64)
                with np.errstate(invalid="ignore"):
                    best = scores.max(axis=1) if scores.shape[1] else np.full(len(scores), -np.inf)
                best[~np.isfinite(best)] = np.nan
                out[: len(best)] = best
        elif signal == "prediction":
            if trace.has("prediction"):
                prediction = trace.array("prediction")[:T].astype(np.float64)  # [T, C]
                if prediction.shape[1]:
                    out[: len(prediction)] = (
                        prediction.max(axis=1) if prediction.shape[1] > 1 else prediction[:, 0]
                    )
    except (KeyError, IndexError):
        pass
    return out


def prediction_classes(trace: Trace | None) -> np.ndarray | None:
    """The likeliest label at each step of a classifier with several labels (None: one label, or no
    prediction column)."""
    if trace is None or not trace.has("prediction"):
        return None
    prediction = trace.array("prediction")[: len(trace)]
    if prediction.shape[1] < 2:
        return None
    return np.argmax(prediction, axis=1)


def tint_strengths(values: np.ndarray, signal: str, labels: int = 1) -> np.ndarray:
    """Map values to tint strengths in [-1, 1] (sign = colour for diverging signals; NaN = none).

    attention: sqrt(value) (absolute, so that a spread-out row stays faint and a sharp one bright;
    the root lifts small weights in a long context into view);
    memory: min-max over the run; diverging: value / max |value| of the run (h is already in [-1, 1]);
    prediction: one label's probability around 0.5 (2p - 1: 0.5 untinted, 1 and 0 full in the two
    colours), or with `labels` > 1 how far the likeliest label's probability is above a uniform guess.
    """
    kind = SIGNALS.get(signal, ("", "none"))[1]
    strengths = np.full(values.shape, np.nan)
    finite = np.isfinite(values)
    if kind == "none" or not finite.any():
        return strengths
    v = values[finite]
    if signal == "attention":
        strengths[finite] = np.sqrt(np.clip(v, 0.0, 1.0))
    elif signal == "memory":
        lo, hi = v.min(), v.max()
        strengths[finite] = (v - lo) / (hi - lo) if hi > lo else 1.0
    elif signal == "prediction":
        floor = 1.0 / labels if labels > 1 else 0.5
        strengths[finite] = np.clip((v - floor) / (1.0 - floor), -1.0, 1.0)
    elif signal == "unit":
        strengths[finite] = np.clip(v, -1, 1)
    else:
        top = np.abs(v).max()
        strengths[finite] = v / top if top > 0 else 0.0
    return strengths


def tint_scale(values: np.ndarray, signal: str, labels: int = 1) -> tuple[float, float] | None:
    """The values at the two ends of the tint's colour scale (what tint_strengths maps to its lowest
    and to its full strength), or None when nothing is tinted."""
    kind = SIGNALS.get(signal, ("", "none"))[1]
    finite = values[np.isfinite(values)]
    if kind == "none":
        return None
    if signal == "attention":
        return 0.0, 1.0
    if signal == "prediction":
        return (1.0 / labels if labels > 1 else 0.0), 1.0
    if not finite.size:
        return None
    if signal == "memory":
        return float(finite.min()), float(finite.max())
    top = 1.0 if signal == "unit" else float(np.abs(finite).max())
    return -top, top


def scale_text(value: float) -> str:
    return f"{value:.3g}"
