"""Shared by the experiments: which token ids a random sequence draws from, and batches cut to a
token budget so one forward pass stays within memory on a small machine."""

from __future__ import annotations

import numpy as np

BATCH_TOKENS = 16_384  # tokens per forward pass (rows x length) of a transformer
RECURRENT_ROWS = 512  # rows per nn.LSTM / nn.GRU call: its steps run in sequence, so wide batches pay


def batch_budget(backend, length: int) -> int:
    """Tokens one forward pass of rows of `length` may take: a transformer holds every position's
    activations (and attention), a recurrent model's score only its last outputs."""
    if backend.info.kind == "transformer":
        return BATCH_TOKENS
    return RECURRENT_ROWS * max(1, length)


def token_pool(backend) -> np.ndarray:
    """The ids a random sequence draws from: the vocabulary without special or unknown tokens."""
    tokenizer = backend.tokenizer
    specials: set[int] = set()
    if backend.info.kind == "transformer":
        size = min(int(backend.info.vocab_size), len(tokenizer))
        specials = set(getattr(tokenizer, "all_special_ids", []) or [])
    else:
        size = len(tokenizer.tokens)
        for name in ("unk", "pad"):
            index = getattr(tokenizer, name, None)
            if index is not None:
                specials.add(int(index))
    pool = np.array([i for i in range(size) if i not in specials], dtype=np.int64)
    return pool


def row_batches(rows: int, length: int, budget: int = BATCH_TOKENS) -> list[slice]:
    """Slices of `rows` rows of `length` tokens each, at most `budget` tokens a slice (one row at least)."""
    per = max(1, budget // max(1, length))
    return [slice(s, min(rows, s + per)) for s in range(0, rows, per)]
