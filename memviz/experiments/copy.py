"""`memviz experiment copy`: recall against distance (a copy probe; Olsson et al. 2022's induction).

A trial is a random token sequence of length n, a gap of d filler tokens, then the sequence again.
The loss (nats per token) on the second copy against d shows how far back the model finds the first
copy; the first copy's loss (nothing to copy from) is the baseline. The second copy's first token
follows filler, so it is not scored unless --score-first. Each trial's sequence is drawn once and
kept at every d (only the filler changes), seeded: the same seed gives the same tokens.

All trials at one d go through the model in one batched forward pass (transformers: eager
attention; recurrent models: nn.LSTM / nn.GRU over the batch), never token by token. Transformers
also give the induction score of each head: the attention from each token of the second copy to
the token after its first occurrence, averaged over tokens and trials, at the smallest d.

Distances run up to the window minus 2n (transformers) or 2,000 (recurrent models), 12 of them on a
log scale unless --distances names them.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from memviz.errors import MemvizError
from memviz.experiments.batching import batch_budget, row_batches, token_pool
from memviz.experiments.models import model_entry, require_lm, unique_names
from memviz.experiments.progress import progress_of
from memviz.experiments.registry import Experiment
from memviz.experiments.result import ExperimentResult
from memviz.options import number_list

RECURRENT_MAX_DISTANCE = 2000
DEFAULT_POINTS = 12
FILLERS = ("random", "repeat")  # random tokens, or one random token repeated d times
ATTENTION_BYTES = 512 * 2**20  # the most attention weights one induction-score pass may hold

COLUMNS = {
    "model": "the model's name",
    "distance": "d: filler tokens between the end of the first copy and the start of the second",
    "lookback": "n + d: how many tokens back each token's first occurrence is",
    "trials": "random sequences measured at this d",
    "tokens_scored": "tokens of each copy scored per trial (n - 1, or n with --score-first for the second)",
    "loss_second": "mean loss (nats/token) on the second copy, over tokens and trials",
    "loss_second_sem": "standard error of loss_second over the trials",
    "loss_first": "mean loss (nats/token) on the first copy: the baseline with nothing to copy",
    "loss_first_sem": "standard error of loss_first over the trials",
    "copy_gain": "loss_first - loss_second: nats per token the first copy saves (0: nothing recalled)",
}


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=50, help="tokens in the random sequence (default 50)")
    p.add_argument("--trials", type=int, default=8, help="random sequences per distance (default 8)")
    p.add_argument(
        "--distances",
        metavar="D,D,...",
        type=number_list(int, 0, 10**9, "whole numbers"),
        help="filler lengths d to measure (default: 0 and 11 more on a log scale up to the longest)",
    )
    p.add_argument(
        "--max-distance",
        type=int,
        help=f"the longest d (default: window - 2n; recurrent models {RECURRENT_MAX_DISTANCE})",
    )
    p.add_argument("--filler", choices=FILLERS, default="random", help="what the gap is made of (random)")
    p.add_argument(
        "--score-first",
        action="store_true",
        help="score the second copy's first token too (it follows filler: nothing predicts it)",
    )


def longest_distance(backend, n: int, requested: int | None = None) -> int:
    """The longest d a model can take: its window minus the two copies (transformers), else 2,000."""
    window = backend.info.context_size if backend.info.kind == "transformer" else None
    limit = window - 2 * n if window else RECURRENT_MAX_DISTANCE
    if requested is not None:
        limit = min(limit, requested) if window else requested
    if limit < 0:
        raise MemvizError(f"{backend.info.name}: two copies of {n} tokens do not fit its window of {window}")
    return limit


def default_distances(longest: int, points: int = DEFAULT_POINTS) -> list[int]:
    """0, then points - 1 distances spaced evenly on a log scale from 1 to `longest`."""
    if longest <= 0:
        return [0]
    spaced = np.geomspace(1, longest, points - 1)
    return sorted({0, *(int(round(v)) for v in spaced)})


def trial_tokens(
    pool: np.ndarray, n: int, d: int, seed: int, trial: int, filler: str = "random"
) -> np.ndarray:
    """One trial's 2n + d token ids: the sequence (the same at every d), the filler, the sequence again."""
    sequence = pool[np.random.default_rng([seed, trial]).integers(0, len(pool), n)]
    rng = np.random.default_rng([seed, trial, d])
    if filler == "repeat":
        gap = np.full(d, pool[rng.integers(0, len(pool))], dtype=np.int64)
    else:
        gap = pool[rng.integers(0, len(pool), d)]
    return np.concatenate([sequence, gap, sequence]).astype(np.int64)


def copy_positions(n: int, d: int, score_first: bool) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the per-position losses (position t predicts token t + 1) of the tokens scored
    in the first copy (its tokens 1 .. n-1) and in the second (1 .. n-1, or 0 .. n-1)."""
    first = np.arange(0, n - 1)  # predicts tokens 1 .. n-1
    start = n + d  # the second copy's first token
    second = np.arange(start - 1 if score_first else start, start + n - 1)
    return first, second


def induction_scores(attentions, n: int, d: int) -> np.ndarray:
    """[B, L, A]: per trial, layer and head, the mean attention from the second copy's token i
    (position n + d + i) to the token after its first occurrence (position i + 1), i = 0 .. n-2."""
    i = np.arange(n - 1)
    queries, keys = n + d + i, i + 1
    per_layer = [a[:, :, queries, keys].float().mean(-1) for a in attentions]  # each [B, A]
    import torch

    return torch.stack(per_layer, dim=1).cpu().numpy().astype(np.float64)


def _sem(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")


def measure_model(backend, name: str, args, distances: list[int], progress) -> tuple[list[dict], dict]:
    """Rows for one model, and its per-trial losses (and induction scores) for results.json."""
    import torch

    n, trials, seed, filler = args.n, args.trials, args.seed, args.filler
    pool = token_pool(backend)
    rows, per_trial = [], {"distance": [], "loss_first": [], "loss_second": []}
    induction = None
    is_transformer = backend.info.kind == "transformer"
    for step, d in enumerate(distances):
        progress(f"{name}: copy, distance {d}", step, len(distances))
        batch = np.stack([trial_tokens(pool, n, d, seed, t, filler) for t in range(trials)])
        ids = torch.from_numpy(batch)
        want_attention = is_transformer and d == distances[0]
        length = ids.shape[1]
        budget = batch_budget(backend, length)
        if want_attention:  # attention weights: B x L x A x T x T floats held at once
            per_row = backend.info.num_layers * backend.info.num_heads * length * length * 4
            budget = max(length, ATTENTION_BYTES // max(1, per_row) * length)
        losses, scores = [], []
        for rows_slice in row_batches(trials, length, budget):
            part = ids[rows_slice]
            logp, attentions = backend.score(part[:, :-1], part[:, 1:], attentions=want_attention)
            losses.append(-logp.double().numpy())
            if want_attention:
                scores.append(induction_scores(attentions, n, d))
        loss = np.concatenate(losses)  # [trials, 2n + d - 1]
        first_at, second_at = copy_positions(n, d, args.score_first)
        first, second = loss[:, first_at].mean(1), loss[:, second_at].mean(1)
        if scores:
            induction = {"distance": d, "scores": np.concatenate(scores).mean(0)}
        per_trial["distance"].append(d)
        per_trial["loss_first"].append(first)
        per_trial["loss_second"].append(second)
        rows.append(
            {
                "model": name,
                "distance": d,
                "lookback": n + d,
                "trials": trials,
                "tokens_scored": len(second_at),
                "loss_second": float(second.mean()),
                "loss_second_sem": _sem(second),
                "loss_first": float(first.mean()),
                "loss_first_sem": _sem(first),
                "copy_gain": float(first.mean() - second.mean()),
            }
        )
    progress(f"{name}: copy", len(distances), len(distances))
    if induction is not None:
        per_trial["induction"] = induction
    return rows, per_trial


def run(backends: list, args: argparse.Namespace) -> ExperimentResult:
    if args.n < 2:
        raise MemvizError(f"--n {args.n}: a sequence needs 2 tokens at least (one read, one predicted)")
    if args.trials < 1:
        raise MemvizError(f"--trials {args.trials}: give 1 or more")
    requested = getattr(args, "distances", None)  # sorted, each once (number_list)
    progress = progress_of(args)
    names = unique_names(backends)
    rows, models, extra = [], [], {"per_trial": {}, "induction": {}, "distances": {}}
    for backend, name in zip(backends, names, strict=True):
        require_lm(backend)
        longest = longest_distance(backend, args.n, args.max_distance)
        if requested is None:
            distances = default_distances(longest)
        else:
            distances = [d for d in requested if d <= longest]
            if len(distances) < len(requested):
                progress.note(f"{name}: distances above {longest} left out (its window)")
            if not distances:
                raise MemvizError(f"{name}: every distance in --distances is above its longest, {longest}")
        model_rows, per_trial = measure_model(backend, name, args, distances, progress)
        rows += model_rows
        models.append({**model_entry(backend, name), "max_distance": longest})
        extra["distances"][name] = distances
        induction = per_trial.pop("induction", None)
        extra["per_trial"][name] = per_trial
        if induction is not None:
            extra["induction"][name] = induction
    settings = {
        "n": args.n,
        "trials": args.trials,
        "distances": requested if requested is not None else "auto",
        "max_distance": args.max_distance,
        "seed": args.seed,
        "filler": args.filler,
        "score_first": bool(args.score_first),
        "loss_unit": "nats per token",
        "induction_distance": "the smallest distance measured",
    }
    return ExperimentResult("copy", settings, models, dict(COLUMNS), rows, extra)


EXPERIMENT = Experiment(
    name="copy",
    help="recall against distance: the loss on a repeated random sequence as the gap grows",
    run=run,
    figure="memviz.export.experiment_figures:CopyFigure",
    more_figures={"induction": "memviz.export.experiment_figures:InductionFigure"},
    add_options=add_options,
)
