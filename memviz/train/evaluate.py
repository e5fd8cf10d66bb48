"""Held-out bits per character (comparable across tokenizers) and the in-context copying test.

Bits per character = the bits of every predicted token / the characters after the first token. A word
model reads lower-cased words and drops whitespace, so its figure leaves out case and spacing; an
unknown word is charged its spelling too (memviz.train.spelling).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from memviz.backends.gpt2 import GPT2Backend
from memviz.backends.recurrent import RecurrentBackend
from memviz.backends.tokenizers import CharTokenizer, WordTokenizer
from memviz.errors import MemvizError
from memviz.train.spelling import RULE as SPELLING_RULE
from memviz.train.spelling import SPELLING_FILE, SpellingModel

LOWER_BOUND_RULE = "unknown word: -log2 p(<unk>) alone (no spelling.json: a lower bound)"

Progress = Callable[[int, int], object]  # (tokens predicted so far, tokens to predict)


class NothingToPredict(MemvizError):
    """A text of fewer than 2 tokens: there is no next token to score."""


def _check_predictable(n_tokens: int) -> None:
    if n_tokens < 2:
        raise NothingToPredict(
            f"{n_tokens} token{'s' if n_tokens != 1 else ''}: nothing to predict "
            "(bits per character needs at least 2 tokens, one to read and one to predict)"
        )


@dataclass
class RecurrentScore:
    """A recurrent model's bits on a text: the model's own, the unknown words' spelling, the characters."""

    model_bits: float
    spelling_bits: float
    characters: int  # the characters after the first token (the ones predicted)
    tokens: int  # the tokens predicted
    unknown: int  # predicted tokens (or skipped words) outside the vocabulary
    rule: str | None  # how an unknown word was charged; None: a char or BPE model (no spelling)

    @property
    def bits_per_char(self) -> float:
        return (self.model_bits + self.spelling_bits) / max(1, self.characters)


def _word_targets(tokenizer: WordTokenizer, text: str, spelling: SpellingModel | None):
    """ids, the spelling bits owed at each id, bits owed by words that have no id, the characters
    after the first id's word (in the lower-cased text the tokenizer reads), the unknown count."""
    read = text.lower() if tokenizer.lowercase else text
    if tokenizer.strip_regex is not None:
        read = tokenizer.strip_regex.sub("", read)
    ids: list[int] = []
    owed: list[float] = []
    skipped_bits, unknown, first_end = 0.0, 0, None
    for match in tokenizer.regex.finditer(read):
        word = match.group()
        i = tokenizer.index.get(word)
        cost = 0.0
        if i is None:
            cost = spelling.bits(word) if spelling is not None else 0.0
            if ids:  # the first token is read, not predicted
                unknown += 1
            if tokenizer.unk is None:  # a Keras-style tokenizer drops the word: its spelling still costs
                skipped_bits += cost if ids else 0.0
                continue
            i = tokenizer.unk
        if first_end is None:
            first_end = match.end()
        ids.append(i)
        owed.append(cost)
    characters = len(read) - (first_end or 0)
    return ids, owed, skipped_bits, characters, unknown


@torch.inference_mode()
def recurrent_score(
    backend: RecurrentBackend, text: str, chunk: int = 2048, progress: Progress | None = None
) -> RecurrentScore:
    """Every token after the first predicted with the state carried over the whole text.

    Word models: an unknown word costs -log2 p(<unk>) plus its spelling (memviz.train.spelling) when
    the model folder has spelling.json, else -log2 p(<unk>) alone (a lower bound, and `rule` says so).
    Character models: an unknown character costs -log2 p(unknown token).
    """
    if getattr(backend, "head", "lm") != "lm":
        raise MemvizError(
            f"{backend.info.name}: a classifier predicts labels, not text: no bits per character"
        )
    tokenizer = backend.tokenizer
    rule: str | None = None
    if isinstance(tokenizer, WordTokenizer):
        spelling = SpellingModel.load(Path(backend.info.source) / SPELLING_FILE)
        ids_list, owed, skipped, characters, unknown = _word_targets(tokenizer, text, spelling)
        rule = SPELLING_RULE if spelling is not None else LOWER_BOUND_RULE
    else:
        encoding = backend.encode(text)
        ids_list = list(encoding.ids)
        owed, skipped = [0.0] * len(ids_list), 0.0
        if isinstance(tokenizer, CharTokenizer):
            characters = len(ids_list) - 1
        else:
            characters = len(text) - len(tokenizer.tokens[ids_list[0]]) if ids_list else 0
        unknown = sum(1 for i in ids_list[1:] if i == getattr(tokenizer, "unk", None))
    ids = torch.tensor(ids_list, dtype=torch.long)
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
    return RecurrentScore(
        model_bits=total_bits,
        spelling_bits=sum(owed[1:]) + skipped,
        characters=characters,
        tokens=len(ids) - 1,
        unknown=unknown,
        rule=rule,
    )


def lstm_bits_per_char(
    backend: RecurrentBackend, text: str, chunk: int = 2048, progress: Progress | None = None
) -> float:
    """Bits per character of any recurrent language model (the name from when it was LSTMs alone)."""
    return recurrent_score(backend, text, chunk=chunk, progress=progress).bits_per_char


@torch.inference_mode()
def gpt2_bits_per_char(
    backend: GPT2Backend, text: str, batch: int = 8, progress: Progress | None = None
) -> float:
    """Sliding windows with half-window stride: every token is predicted with at least half a window of context."""
    model, tokenizer = backend.model, backend.tokenizer
    start = list(
        backend.info.start_ids
    )  # a BOS, as a Session's run starts: then every character is predicted
    ids = torch.tensor([*start, *backend.encode(text).ids], dtype=torch.long)
    _check_predictable(len(ids))
    window = backend.info.context_size or len(ids)  # every family's window, not GPT-2's n_positions alone
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
    predicted_chars = len(text) - (0 if start else len(tokenizer.decode(ids[:1].tolist())))
    return total_bits / max(1, predicted_chars)


def bits_per_char(backend, text: str, progress: Progress | None = None) -> float:
    """Bits per character of `text`; `progress(done, total)` counts predicted tokens."""
    if isinstance(backend, RecurrentBackend):
        return recurrent_score(backend, text, progress=progress).bits_per_char
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
    length = min(length, (backend.info.context_size or 2 * length) // 2)
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
