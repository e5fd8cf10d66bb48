"""`memviz experiment context`: the loss as the visible context shrinks (Khandelwal et al. 2018,
"Sharp Nearby, Fuzzy Far Away").

A held-out text cut to what fits the model's window (recurrent models: --max-window, 1,000 tokens)
is scored with only the last W tokens visible, for W on a log scale from 1 to the whole text, in
bits per character (so models with different tokenizers compare) and relative to the full
context. Bits per character are `memviz eval`'s: the same characters counted (and a word model's
unknown words charged their spelling), so at full W the figure is `memviz eval`'s on that text.

Truncated: position t (predicting token t + 1) sees tokens t - W + 1 .. t. Positions with fewer
than W tokens before them see everything, as in the full context; the rest are unfolded into a
batch of windows of W tokens, one forward pass per batch (recurrent models from a zero state).

Shuffled (word order vs content): the model sees the whole prefix, but the tokens more than w back
are shuffled, at --positions target positions of the text's second half and --shuffle-trials
random orders each; its increase over the full context at those positions is scaled to bits per
character like the truncated curve's.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from memviz.errors import MemvizError
from memviz.experiments.batching import batch_budget, row_batches
from memviz.experiments.models import model_entry, require_lm, unique_names
from memviz.experiments.progress import progress_of
from memviz.experiments.registry import Experiment
from memviz.experiments.result import ExperimentResult
from memviz.options import number_list

RECURRENT_MAX_WINDOW = 1000
DEFAULT_POINTS = 12
LOG2 = math.log(2)

COLUMNS = {
    "model": "the model's name",
    "variant": "truncated: only the last W tokens seen; shuffled: all seen, those beyond the last W shuffled",
    "window": "W: the tokens seen (truncated) or kept in order (shuffled) before each predicted token",
    "tokens_scored": "predicted tokens the row averages over (all of the text's, or the sampled positions)",
    "bits_per_char": "bits per character of the text (shuffled: full context's plus bpc_increase)",
    "bpc_increase": "bits_per_char minus the full context's (0: the tokens beyond W do not help)",
    "bpc_increase_sem": "standard error of bpc_increase over the shuffled orders (empty: truncated, exact)",
    "relative": "bits_per_char / the full context's",
}


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--windows",
        metavar="W,W,...",
        type=number_list(int, 1, 10**9, "whole numbers"),
        help="context sizes W (default: 12 on a log scale from 1 to the text)",
    )
    p.add_argument(
        "--max-window",
        type=int,
        help=f"tokens of the text kept (default: the window; recurrent models {RECURRENT_MAX_WINDOW})",
    )
    p.add_argument("--no-shuffle", action="store_true", help="leave out the shuffled-beyond-W variant")
    p.add_argument(
        "--positions", type=int, default=16, help="target positions the shuffled variant measures (16)"
    )
    p.add_argument("--shuffle-trials", type=int, default=3, help="random orders per position and W (3)")


def default_windows(longest: int, points: int = DEFAULT_POINTS) -> list[int]:
    return sorted({int(round(v)) for v in np.geomspace(1, max(1, longest), points)})


def held_out(backend, text: str, limit: int) -> tuple[str, list[int]]:
    """The longest prefix of `text` (in characters) whose tokens fit `limit`, and its tokens."""
    ids = list(backend.encode(text).ids)
    if len(ids) <= limit:
        return text, ids
    lo, hi = 0, len(text)  # the longest m with len(encode(text[:m])) <= limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(backend.encode(text[:mid]).ids) <= limit:
            lo = mid
        else:
            hi = mid - 1
    prefix = text[:lo]
    return prefix, list(backend.encode(prefix).ids)


def accounting(backend, text: str, ids: list[int]) -> tuple[int, float, float]:
    """`memviz eval`'s characters, the bits it adds beyond the model's own (a word model's unknown
    words' spelling), and its bits per character of `text`."""
    from memviz.train.evaluate import gpt2_bits_per_char, recurrent_score

    if backend.info.kind == "transformer":
        characters = len(text) - len(backend.tokenizer.decode(ids[:1]))
        return characters, 0.0, gpt2_bits_per_char(backend, text)
    score = recurrent_score(backend, text)
    return score.characters, score.spelling_bits, score.bits_per_char


def full_bits(backend, ids) -> np.ndarray:
    """Bits of each predicted token (1 .. N-1) with everything before it seen: one pass."""
    import torch

    x = torch.tensor([ids], dtype=torch.long)
    logp, _ = backend.score(x[:, :-1], x[:, 1:])
    return -logp[0].double().numpy() / LOG2


def truncated_bits(backend, ids, window: int, full: np.ndarray) -> np.ndarray:
    """Bits of each predicted token with only the last `window` tokens seen."""
    import torch

    x = torch.tensor(ids, dtype=torch.long)
    n = len(ids)
    bits = full.copy()  # positions t < window see everything anyway
    if window >= n - 1:
        return bits
    windows = x[:-1].unfold(0, window, 1)  # row s: tokens s .. s + window - 1, predicting s + window
    targets = x[window:]
    for part in row_batches(len(windows), window, batch_budget(backend, window)):
        logp, _ = backend.score(windows[part], targets[part].unsqueeze(1))
        bits[part.start + window - 1 : part.stop + window - 1] = -logp[:, 0].double().numpy() / LOG2
    return bits


def target_positions(n: int, count: int) -> np.ndarray:
    """`count` positions t (predicting t + 1) spread over the second half of a text of n tokens."""
    first = (n - 1) // 2
    return np.unique(np.linspace(first, n - 2, max(1, count)).round().astype(np.int64))


def shuffled_bits(backend, ids, positions, windows, trials: int, seed: int, progress=None) -> np.ndarray:
    """[len(windows), trials, len(positions)]: bits of token t + 1 with tokens 0 .. t - w shuffled."""
    import torch

    x = np.asarray(ids, dtype=np.int64)
    out = np.zeros((len(windows), trials, len(positions)))
    for j, t in enumerate(positions):
        if progress is not None:
            progress(j, len(positions))
        rows = []
        for w in windows:
            for trial in range(trials):
                rng = np.random.default_rng([seed, int(t), int(w), trial])
                far = x[: t + 1 - w].copy()
                rng.shuffle(far)
                rows.append(np.concatenate([far, x[t + 1 - w : t + 1]]))
        batch = torch.from_numpy(np.stack(rows))
        target = torch.full((len(rows), 1), int(x[t + 1]), dtype=torch.long)
        values = []
        for part in row_batches(len(rows), batch.shape[1], batch_budget(backend, batch.shape[1])):
            logp, _ = backend.score(batch[part], target[part])
            values.append(-logp[:, 0].double().numpy() / LOG2)
        out[:, :, j] = np.concatenate(values).reshape(len(windows), trials)
    return out


def measure_model(backend, name: str, text: str, args, progress) -> tuple[list[dict], dict, dict]:
    window = backend.info.context_size if backend.info.kind == "transformer" else None
    limit = window or RECURRENT_MAX_WINDOW
    if args.max_window is not None:
        limit = min(limit, args.max_window) if window else args.max_window
    text_used, ids = held_out(backend, text, limit)
    if len(ids) < 3:
        raise MemvizError(f"{name}: the text is {len(ids)} tokens; the context experiment needs 3 or more")
    n = len(ids)
    characters, extra_bits, eval_bpc = accounting(backend, text_used, ids)
    full = full_bits(backend, ids)
    full_bpc = (full.sum() + extra_bits) / max(1, characters)
    requested = args.windows  # sorted, each once (number_list)
    windows = [w for w in requested if w <= n - 1] if requested else default_windows(n - 1)
    if not windows:
        raise MemvizError(f"{name}: every --windows size is above the text's {n - 1} tokens of context")
    rows = []
    steps = len(windows)
    for step, w in enumerate(windows):
        progress(f"{name}: context, W = {w}", step, steps)
        bits = truncated_bits(backend, ids, w, full)
        bpc = (bits.sum() + extra_bits) / max(1, characters)
        rows.append(_row(name, "truncated", w, len(bits), bpc, full_bpc, None))
    shuffle = {}
    if not args.no_shuffle:
        positions = target_positions(n, args.positions)
        shuffle_windows = [w for w in windows if w <= int(positions.min())]
        per_char = len(full) / max(1, characters)  # bits per token -> bits per character
        base = full[positions]
        label = f"{name}: context, shuffled beyond w, target positions"
        bits = shuffled_bits(
            backend,
            ids,
            positions,
            shuffle_windows,
            args.shuffle_trials,
            args.seed,
            progress=lambda done, total: progress(label, done, total),
        )
        for i, w in enumerate(shuffle_windows):
            increase = (bits[i] - base).mean(axis=1) * per_char  # per trial
            sem = float(increase.std(ddof=1) / math.sqrt(len(increase))) if len(increase) > 1 else None
            rows.append(_row(name, "shuffled", w, len(positions), full_bpc + increase.mean(), full_bpc, sem))
        shuffle = {"positions": positions, "windows": shuffle_windows}
    progress(f"{name}: context", steps, steps)
    entry = {
        "tokens": n,
        "characters": characters,
        "text_characters": len(text_used),
        "full_bits_per_char": full_bpc,
        "eval_bits_per_char": eval_bpc,
        "max_window": limit,
    }
    return rows, entry, {"full_bits": full, "shuffle": shuffle}


def _row(name, variant, w, scored, bpc, full_bpc, sem) -> dict:
    return {
        "model": name,
        "variant": variant,
        "window": int(w),
        "tokens_scored": int(scored),
        "bits_per_char": float(bpc),
        "bpc_increase": float(bpc - full_bpc),
        "bpc_increase_sem": sem,
        "relative": float(bpc / full_bpc) if full_bpc > 0 else float("nan"),
    }


def run(backends: list, args: argparse.Namespace) -> ExperimentResult:
    text = getattr(args, "text", None)
    if not text:
        raise MemvizError("the context experiment reads a held-out text: give --text-file")
    if args.positions < 1 or args.shuffle_trials < 1:
        raise MemvizError("--positions and --shuffle-trials: give 1 or more")
    progress = progress_of(args)
    rows, models, extra = [], [], {"per_token_bits": {}, "shuffle": {}}
    for backend, name in zip(backends, unique_names(backends), strict=True):
        require_lm(backend)
        model_rows, entry, arrays = measure_model(backend, name, text, args, progress)
        rows += model_rows
        models.append({**model_entry(backend, name), **entry})
        extra["per_token_bits"][name] = arrays["full_bits"]
        extra["shuffle"][name] = arrays["shuffle"]
    settings = {
        "windows": args.windows or "auto",
        "max_window": args.max_window,
        "shuffle": not args.no_shuffle,
        "positions": args.positions,
        "shuffle_trials": args.shuffle_trials,
        "seed": args.seed,
        "loss_unit": "bits per character (memviz eval's accounting)",
    }
    return ExperimentResult("context", settings, models, dict(COLUMNS), rows, extra)


EXPERIMENT = Experiment(
    name="context",
    help="the loss as the visible context shrinks, and with the order beyond W shuffled",
    run=run,
    figure="memviz.export.experiment_figures:ContextFigure",
    add_options=add_options,
    needs_text=True,
)
