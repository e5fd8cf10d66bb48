"""The dtype policy of what a backend hands to the Trace (the backend converts before data leaves it)."""

from __future__ import annotations

import numpy as np

from memviz.backends.base import ModelInfo

# Attention is kept in float32 (exact) unless a full window would need more than this; then float16.
ATTENTION_FLOAT32_BUDGET = 128 * 2**20


def attention_dtype_for(info: ModelInfo):
    """float32, or float16 where a full window of attention rows would exceed ATTENTION_FLOAT32_BUDGET."""
    window = info.context_size or 1024
    full_bytes = info.num_layers * info.num_heads * window * (window + 1) // 2 * 4
    return np.float32 if full_bytes <= ATTENTION_FLOAT32_BUDGET else np.float16
