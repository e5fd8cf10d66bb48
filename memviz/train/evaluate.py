"""Held-out bits per character (comparable across tokenizers) and the in-context copying test."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from memviz.backends.gpt2 import GPT2Backend
from memviz.backends.lstm import LSTMBackend
from memviz.errors import MemvizError

Progress = Callable[[int, int], object]  # (tokens predicted so far, tokens to predict)


class NothingToPredict(MemvizError):
    """A text of fewer than 2 tokens: there is no next token to score."""


def _check_predictable(n_tokens: int) -> None:
    if n_tokens < 2:
        raise NothingToPredict(
            f"{n_tokens} token{'s' if n_tokens != 1 else ''}: nothing to predict "
            "(bits per character needs at least 2 tokens, one to read and one to predict)"
        )


@torch.inference_mode()
def lstm_bits_per_char(
    backend: LSTMBackend, text: str, chunk: int = 2048, progress: Progress | None = None
) -> float:
    ids = torch.tensor(backend.encode(text).ids, dtype=torch.long)
    _check_predictable(len(ids))
    total_bits, state = 0.0, None
    for start in range(0, len(ids) - 1, chunk):
        x = ids[start : start + chunk].unsqueeze(0)
        y = ids[start + 1 : start + chunk + 1]
        logits, state = backend.model(x, state)
        logits = logits[0, : len(y)]
        total_bits += F.cross_entropy(logits, y, reduction="sum").item() / math.log(2)
        if progress is not None:
            progress(start + len(y), len(ids) - 1)
    return total_bits / max(1, len(ids) - 1)


@torch.inference_mode()
def gpt2_bits_per_char(
    backend: GPT2Backend, text: str, batch: int = 8, progress: Progress | None = None
) -> float:
    """Sliding windows with half-window stride: every token is predicted with at least half a window of context."""
    model, tokenizer = backend.model, backend.tokenizer
    ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)
    _check_predictable(len(ids))
    window = model.config.n_positions
    stride = window // 2
    total_bits = 0.0
    starts = list(range(0, max(1, len(ids) - 1), stride))
    for i in range(0, len(starts), batch):
        for s in starts[i : i + batch]:
            x = ids[s : s + window].unsqueeze(0)
            if x.size(1) < 2:
                continue
            logits = model(input_ids=x).logits[0, :-1]
            targets = x[0, 1:]
            first = 0 if s == 0 else window - stride - 1  # score only tokens not scored before
            nll = F.cross_entropy(logits[first:], targets[first:], reduction="sum").item()
            total_bits += nll / math.log(2)
            if progress is not None:
                progress(min(s + window, len(ids)) - 1, len(ids) - 1)
    predicted_chars = len(text) - len(tokenizer.decode(ids[:1].tolist()))
    return total_bits / max(1, predicted_chars)


def bits_per_char(backend, text: str, progress: Progress | None = None) -> float:
    """Bits per character of `text`; `progress(done, total)` counts predicted tokens."""
    if isinstance(backend, LSTMBackend):
        return lstm_bits_per_char(backend, text, progress=progress)
    return gpt2_bits_per_char(backend, text, progress=progress)


@torch.inference_mode()
def induction_losses(
    backend: GPT2Backend, length: int = 100, trials: int = 16, seed: int = 0
) -> tuple[float, float]:
    """Mean loss (nats/token) on the first and second copy of a random token sequence repeated twice.

    A model with induction heads copies from its context: the second copy's loss falls far below the first.
    """
    model = backend.model
    vocab = model.config.vocab_size
    length = min(length, model.config.n_positions // 2)
    g = torch.Generator().manual_seed(seed)
    special = set(backend.tokenizer.all_special_ids)
    first, second = [], []
    for _ in range(trials):
        seq = torch.randint(0, vocab, (length,), generator=g)
        seq = torch.where(torch.isin(seq, torch.tensor(sorted(special))), (seq + 1) % vocab, seq)
        x = torch.cat([seq, seq]).unsqueeze(0)
        losses = F.cross_entropy(model(input_ids=x).logits[0, :-1], x[0, 1:], reduction="none")
        first.append(losses[: length - 1].mean().item())
        second.append(losses[length:].mean().item())
    return sum(first) / trials, sum(second) / trials
