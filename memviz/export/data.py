"""CSV of one series of a trace, for people who plot elsewhere. The trace's own numbers, unrounded.

- `unit`: one LSTM unit of one layer over time: step, token, generated, i, f, g, o, cell, hidden.
- `attention`: one GPT-2 head's query x key matrix (rows = queries up to the step, zero above the
  diagonal), with the token of each row and column.
- `topk`: the next-token distribution after reading the step's token: rank, token_id, token (the
  candidate's text), probability.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from memviz.core.trace import Trace
from memviz.errors import MemvizError

SERIES = ("unit", "attention", "topk")
# queries an attention CSV may hold: 2048^2 values are about 80 MB of text; 8192^2 (67M) are refused
ATTENTION_CSV_MAX = 2048
GATE_NAMES = ("i", "f", "g", "o")


def _check(name: str, value: int, upper: int, what: str) -> int:
    if not 0 <= value < upper:
        raise MemvizError(
            f"--{name} {value} is out of range: {what} (0..{upper - 1})" if upper else f"--{name}: {what}"
        )
    return value


def _value(x) -> str:
    return repr(float(x))  # shortest text that reads back to the same float


def unit_rows(trace: Trace, layer: int, unit: int) -> list[list]:
    if not trace.has("cell"):
        raise MemvizError(
            f"a unit series needs an LSTM trace; this is a {trace.architecture or 'unknown'} trace"
        )
    cell = trace.array("cell")  # [T, L, H]
    _check("layer", layer, cell.shape[1], f"the model has {cell.shape[1]} layers")
    _check("unit", unit, cell.shape[2], f"the layer has {cell.shape[2]} units")
    gates = trace.array("gates") if trace.has("gates") else None
    hidden = trace.array("hidden") if trace.has("hidden") else None
    header = ["step", "token", "generated"] + (list(GATE_NAMES) if gates is not None else []) + ["cell"]
    header += ["hidden"] if hidden is not None else []
    rows: list[list] = [header]
    for t in range(len(trace)):
        row = [t, trace.token_text[t], int(trace.generated[t])]
        if gates is not None:
            row += [_value(gates[t, layer, k, unit]) for k in range(4)]
        row.append(_value(cell[t, layer, unit]))
        if hidden is not None:
            row.append(_value(hidden[t, layer, unit]))
        rows.append(row)
    return rows


def attention_rows(trace: Trace, layer: int, head: int, step: int | None = None) -> list[list]:
    if not trace.has("attention"):
        raise MemvizError(
            f"an attention series needs a GPT-2 trace; this is a {trace.architecture or 'unknown'} trace"
        )
    L, A = trace.attention_shape
    _check("layer", layer, L, f"the model has {L} layers")
    _check("head", head, A, f"the model has {A} heads")
    n = (
        len(trace)
        if step is None
        else _check("step", step, len(trace), f"this trace has {len(trace)} steps") + 1
    )
    if n > ATTENTION_CSV_MAX:
        raise MemvizError(
            f"an attention CSV of {n} queries would hold {n * n:,} values: export at most "
            f"{ATTENTION_CSV_MAX} (a step before {ATTENTION_CSV_MAX}: --step on the command line), or a figure"
        )
    matrix = trace.attention_matrix(layer, head, stop=n)
    header = ["query_step", "query_token"] + [f"{k}:{trace.token_text[k]}" for k in range(n)]
    rows: list[list] = [header]
    for q in range(n):
        rows.append([q, trace.token_text[q]] + [_value(v) for v in matrix[q, :n]])
    return rows


def topk_rows(trace: Trace, step: int) -> list[list]:
    _check("step", step, len(trace), f"this trace has {len(trace)} steps")
    ids = trace.array("topk_ids")[step]
    probs = trace.array("topk_probs")[step]
    texts = trace.array("topk_text")[step] if trace.has("topk_text") else None
    rows: list[list] = [["rank", "token_id", "token", "probability"]]
    for rank, (i, p) in enumerate(zip(ids, probs, strict=True)):
        # the trace's own text of the candidate, else its vocabulary's; empty when neither knows it
        text = str(texts[rank]) if texts is not None else trace.text_of(int(i))
        rows.append([rank, int(i), "" if text is None else text, _value(p)])
    return rows


def series_rows(
    trace: Trace, series: str, layer: int = 0, head: int = 0, unit: int = 0, step: int | None = None
):
    if series == "unit":
        return unit_rows(trace, layer, unit)
    if series == "attention":
        return attention_rows(trace, layer, head, step)
    if series == "topk":
        return topk_rows(trace, len(trace) - 1 if step is None else step)
    raise MemvizError(f"unknown series '{series}'; series: {', '.join(SERIES)}")


def default_series(trace: Trace) -> str:
    return "unit" if trace.has("cell") else "attention" if trace.has("attention") else "topk"


def write_csv(rows: list[list], out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.is_dir():
        raise MemvizError(f"--out {out}: is a folder; give a file name such as unit.csv")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise MemvizError(f"--out {out}: folder {out.parent} does not exist")
    with open(out, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return out


def export_csv(trace: Trace, out, series: str | None = None, **selection) -> Path:
    return write_csv(series_rows(trace, series or default_series(trace), **selection), out)


def read_csv_values(path: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV this module wrote (for tests and tools)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def as_float_array(rows: list[list[str]], first_column: int) -> np.ndarray:
    return np.array([[float(v) for v in row[first_column:]] for row in rows], dtype=np.float64)
