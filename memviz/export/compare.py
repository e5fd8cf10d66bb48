"""`memviz compare A.memviz B.memviz`: two runs over the same tokens, step by step.

The same model with and without an intervention, or two models sharing a tokenizer. Per step t:
log p of the token that actually came next (t+1) in each run, their difference B - A, whether the
top-1 candidate changed, and KL(A||B) over the candidates both runs kept. Runs whose tokens differ
are refused (one line, naming the first step where they part); `--prefix` compares the tokens they
share from the start instead.

The log-probabilities are the traces' own `target_logprob` (exact: the full distribution). A trace
saved before it was recorded falls back to its kept top-K candidates, NaN where the next token is
not among them, and compare says so on stderr.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memviz.core.trace import Trace
from memviz.errors import MemvizError

COLUMNS = (
    "step",
    "token",
    "next_token",
    "logp_a",
    "logp_b",
    "diff",
    "top1_a",
    "top1_b",
    "top1_changed",
    "kl_a_b",
    "kl_candidates",
    "entropy_a",
    "entropy_b",
)
FIGURE_FORMATS = ("svg", "pdf", "png")


@dataclass
class Comparison:
    """Per step of the compared tokens ([n] each); NaN where a value is unknown (the last step)."""

    a: Trace
    b: Trace
    steps: int
    logp_a: np.ndarray
    logp_b: np.ndarray
    top1_a: np.ndarray  # token ids
    top1_b: np.ndarray
    kl: np.ndarray  # KL(A||B) in nats over the candidates both kept, each renormalised over them
    kl_candidates: np.ndarray  # how many candidates that KL is over
    entropy_a: np.ndarray
    entropy_b: np.ndarray
    notes: list[str]
    names: tuple[str, str] = ("A", "B")

    @property
    def diff(self) -> np.ndarray:
        return self.logp_b - self.logp_a

    @property
    def top1_changed(self) -> np.ndarray:
        return self.top1_a != self.top1_b


def target_logprobs(trace: Trace, name: str) -> tuple[np.ndarray, str | None]:
    """log p of the next token per step: the trace's own, else from its kept candidates (+ a note)."""
    if trace.has("target_logprob"):
        return trace.array("target_logprob").astype(np.float64), None
    if not trace.has("topk_ids") or trace.array("topk_ids").shape[1] == 0:
        raise MemvizError(f"{name}: has no next-token distribution (a classifier?): nothing to compare")
    ids, probs = trace.array("topk_ids"), trace.array("topk_probs").astype(np.float64)
    out = np.full(len(trace), np.nan)
    for t in range(len(trace) - 1):
        hit = np.flatnonzero(ids[t] == trace.token_ids[t + 1])
        if hit.size:
            out[t] = np.log(probs[t, hit[0]])
    note = (
        f"{name} has no target_logprob (saved by an older memviz): its log p comes from its top "
        f"{ids.shape[1]} candidates, NaN where the next token is outside them"
    )
    return out, note


def kept_kl(ids_a: np.ndarray, p_a: np.ndarray, ids_b: np.ndarray, p_b: np.ndarray) -> tuple[float, int]:
    """KL(A||B) over the token ids both candidate lists hold, each renormalised over them."""
    shared, ia, ib = np.intersect1d(ids_a[ids_a >= 0], ids_b[ids_b >= 0], return_indices=True)
    if shared.size == 0:
        return float("nan"), 0
    a = p_a[ids_a >= 0][ia].astype(np.float64)
    b = p_b[ids_b >= 0][ib].astype(np.float64)
    if a.sum() <= 0 or b.sum() <= 0:
        return float("nan"), int(shared.size)
    a, b = a / a.sum(), b / b.sum()
    keep = a > 0
    with np.errstate(divide="ignore"):
        return float(np.sum(a[keep] * (np.log(a[keep]) - np.log(b[keep])))), int(shared.size)


def compare_traces(
    a: Trace, b: Trace, prefix: bool = False, names: tuple[str, str] = ("A", "B")
) -> Comparison:
    n = min(len(a), len(b))
    first = next((t for t in range(n) if a.token_ids[t] != b.token_ids[t]), n)
    if first < max(len(a), len(b)) and not prefix:
        if first < n:
            where = f"at step {first}: {a.token_label(first)!r} vs {b.token_label(first)!r}"
        else:
            where = f"in length: {len(a)} vs {len(b)} tokens"
        raise MemvizError(
            f"{names[0]} and {names[1]} read different tokens (they differ {where}); compare runs over "
            "the same tokens, or pass --prefix to compare the tokens they share from the start"
        )
    if first == 0:
        raise MemvizError(f"{names[0]} and {names[1]} share no tokens from the start: nothing to compare")
    n = first
    notes: list[str] = []
    columns = []
    for trace, name in zip((a, b), names, strict=True):
        logp, note = target_logprobs(trace, name)
        if note:
            notes.append(note)
        logp = logp[:n].copy()
        logp[n - 1] = np.nan  # the last step: no next token, or (a prefix) the runs' next tokens differ
        entropy = (
            trace.array("entropy")[:n].astype(np.float64) if trace.has("entropy") else np.full(n, np.nan)
        )
        if not trace.has("entropy"):
            notes.append(f"{name} has no entropy (saved by an older memviz): its column is NaN")
        columns.append((logp, trace.array("topk_ids")[:n], trace.array("topk_probs")[:n], entropy))
    (logp_a, ids_a, p_a, ent_a), (logp_b, ids_b, p_b, ent_b) = columns
    kl = np.full(n, np.nan)
    count = np.zeros(n, dtype=np.int64)
    for t in range(n):
        kl[t], count[t] = kept_kl(ids_a[t], p_a[t], ids_b[t], p_b[t])
    return Comparison(
        a=a,
        b=b,
        steps=n,
        logp_a=logp_a,
        logp_b=logp_b,
        top1_a=ids_a[:, 0].copy(),
        top1_b=ids_b[:, 0].copy(),
        kl=kl,
        kl_candidates=count,
        entropy_a=ent_a,
        entropy_b=ent_b,
        notes=notes,
        names=names,
    )


def _value(x: float) -> str:
    return repr(float(x))  # shortest text that reads back to the same float ("nan" where unknown)


def comparison_rows(c: Comparison) -> list[list]:
    rows: list[list] = [list(COLUMNS)]
    text_a, text_b = c.a.text_of, c.b.text_of
    for t in range(c.steps):
        next_token = c.a.token_label(t + 1) if t + 1 < c.steps else ""
        rows.append(
            [
                t,
                c.a.token_label(t),
                next_token,
                _value(c.logp_a[t]),
                _value(c.logp_b[t]),
                _value(c.diff[t]),
                text_a(int(c.top1_a[t])) or "",
                text_b(int(c.top1_b[t])) or "",
                int(c.top1_changed[t]),
                _value(c.kl[t]),
                int(c.kl_candidates[t]),
                _value(c.entropy_a[t]),
                _value(c.entropy_b[t]),
            ]
        )
    return rows


def summary(c: Comparison, names: tuple[str, str]) -> str:
    known = ~np.isnan(c.diff)
    mean = float(np.mean(c.diff[known])) if known.any() else float("nan")
    changed = int(c.top1_changed.sum())
    return (
        f"{c.steps} steps: mean log p {names[1]} - {names[0]} = {mean:+.4f} nats over {int(known.sum())} "
        f"next tokens; top-1 changed at {changed} step(s)"
    )


# -- the figure -------------------------------------------------------------------------------------
def save_figure(c: Comparison, path: Path, theme: str = "talk", size: tuple[int, int] | None = None) -> Path:
    from memviz.core.view import ViewState
    from memviz.export.compare_figure import CompareFigure
    from memviz.export.render import FigureRenderer

    def make(view):
        return CompareFigure(view, c)

    renderer = FigureRenderer(make, c.a, ViewState(theme=theme, cursor=c.steps - 1), size=size)
    try:
        return renderer.save(path)
    finally:
        renderer.close()


# -- the command ------------------------------------------------------------------------------------
def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare two runs over the same tokens: log p of each next token, top-1, KL",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("a", metavar="A.memviz", help="the first run (the baseline)")
    p.add_argument("b", metavar="B.memviz", help="the second run (differences are B - A)")
    p.add_argument("--out", metavar="CSV", help="write the per-step table here (columns: see the README)")
    p.add_argument("--figure", metavar="FILE", help="a figure for a slide: .svg, .pdf or .png")
    p.add_argument("--theme", choices=("talk", "dark"), default="talk", help="the figure's look (talk)")
    p.add_argument(
        "--prefix", action="store_true", help="runs whose tokens differ: compare the tokens they share first"
    )
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from memviz.export.data import write_csv
    from memviz.export.render import check_out_path, format_from_path

    figure = None
    if args.figure:
        format_from_path(args.figure, FIGURE_FORMATS)  # before loading: a bad name costs nothing
        figure = check_out_path(args.figure)
    out = check_out_path(args.out) if args.out else None
    names = (Path(args.a).stem, Path(args.b).stem)
    c = compare_traces(Trace.load(args.a), Trace.load(args.b), prefix=args.prefix, names=names)
    for note in c.notes:
        print(f"memviz: note: {note}", file=sys.stderr)
    print(summary(c, names))
    if out is not None:
        write_csv(comparison_rows(c), out)
        print(f"wrote {out}")
    if figure is not None:
        save_figure(c, figure, theme=args.theme)
        print(f"wrote {figure}")
    return 0
