"""Each step's queries and keys, after rotary embedding, captured where transformers computes attention.

Trace format 2 keeps these instead of dense attention rows: a row is then rebuilt exactly as
softmax(q·Kᵀ·scale + mask) (memviz.core.attention_store). The capture is an attention function
registered with transformers' `AttentionInterface` under the name "memviz_eager": it calls the
family's own `eager_attention_forward` (the one the model uses with "eager"), so the model's outputs
are those of eager attention, and hands the query and key states it was given to the sink of the
thread's current step, with each head's expected distance back under the weights eager computed
(`ATTENTION_DISTANCE`: the head-distance panel's mean needs no rebuilt row). Outside a step
(documents read into the memory) nothing is kept.

Families whose modelling code routes through the interface in transformers 5.24: GPT-2, GPT-NeoX,
OPT, Llama, SmolLM3, Mistral, Qwen2, Qwen3, Phi-3, Gemma 2, Gemma 3. GPT-Neo computes attention in
its own `_attn` method, so it keeps dense rows (`dense_reason` says why, the manifest too).

`attention_layout` records what a rebuild needs per layer: the scale the family passes (OPT scales
its queries before the call and passes 1.0, so its stored queries are the scaled ones), the sliding
window its mask applies, and the soft-cap its eager function applies (Gemma 2 only: Gemma 3's code
passes none). torch and transformers are imported inside the functions: the constants are read by
the Trace (Qt app start-up must not wait for torch).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

# StepOutput.internals keys, named with the other hook points (imported from here by the Trace too)
from memviz.backends.hook_points import ATTENTION_DISTANCE, ATTENTION_K, ATTENTION_Q  # noqa: F401

if TYPE_CHECKING:
    import torch


IMPLEMENTATION = "memviz_eager"
# Queries are kept in float32 unless a full context window of them would exceed this; then float16.
# Keys are always float32: there are fewer of them (A_kv heads) and, measured on the test families,
# float16 keys double the rebuilt rows' error (2.4e-3 -> 1.1e-3 to 1.6e-3 with float32 keys).
QUERY_FLOAT32_BUDGET = 2**30

# The families whose attention goes through AttentionInterface (checked against transformers 5.24).
INTERFACE_FAMILIES = frozenset(
    ("gpt2", "gpt_neox", "opt", "llama", "smollm3", "mistral", "qwen2", "qwen3", "phi3", "gemma2", "gemma3")
)
SOFTCAP_FAMILIES = frozenset(("gemma2",))  # the families whose attention call passes `softcap`
PRESCALED_FAMILIES = frozenset(("opt",))  # queries scaled before the call, which passes scaling=1.0

_local = threading.local()
_eager: dict[type, Callable] = {}


def query_dtype_for(info):
    """numpy float32, or float16 where a full window of float32 queries would exceed the budget."""
    import numpy as np

    window = info.context_size or 1024
    heads = info.num_heads
    head_dim = info.hidden_size // max(1, heads)
    full = window * info.num_layers * heads * head_dim * 4
    return np.float32 if full <= QUERY_FLOAT32_BUDGET else np.float16


def register() -> None:
    """Register "memviz_eager" with transformers (attention and mask functions); idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    if IMPLEMENTATION not in AttentionInterface._global_mapping:
        AttentionInterface.register(IMPLEMENTATION, _attention)
    if IMPLEMENTATION not in AttentionMaskInterface._global_mapping:
        AttentionMaskInterface.register(IMPLEMENTATION, eager_mask)  # the masks "eager" gets


def _eager_of(module) -> Callable:
    """The family's own eager attention: `eager_attention_forward` of the module's modelling file."""
    kind = type(module)
    found = _eager.get(kind)
    if found is None:
        found = _eager[kind] = sys.modules[kind.__module__].eager_attention_forward
    return found


def _attention(module, query, key, value, attention_mask, **kwargs):
    out = _eager_of(module)(module, query, key, value, attention_mask, **kwargs)
    sink = getattr(_local, "sink", None)
    if sink is not None:
        sink.keep(module, query, key, kwargs, out[1])
    return out


class QKSink:
    """One forward pass's queries and keys: the last n positions of every layer (n = the pass's
    query length: 1 for a step through the cache)."""

    def __init__(self, layer_of: dict[int, int], layers: int) -> None:
        self._layer_of = layer_of  # id(attention module) -> layer index
        self.layers = layers
        self.q: list[torch.Tensor | None] = [None] * layers
        self.k: list[torch.Tensor | None] = [None] * layers
        self.seen: dict[int, tuple[float | None, float | None]] = {}  # layer -> (scaling, softcap) passed
        self.weights: list[torch.Tensor | None] = [None] * layers  # [A, q, n]: the pass's own weights

    def keep(self, module, query: torch.Tensor, key: torch.Tensor, kwargs: dict, weights=None) -> None:
        layer = self._layer_of.get(id(module))
        if layer is None:
            return
        n = query.shape[-2]
        self.q[layer] = query[0, :, -n:, :]  # [A, n, d]
        self.k[layer] = key[0, :, -n:, :]  # [A_kv, n, d]: the pass's new keys are the cache's last n
        if weights is not None:
            self.weights[layer] = weights[0]  # summed once per pass, all layers together (distances)
        if layer not in self.seen:
            self.seen[layer] = (kwargs.get("scaling"), kwargs.get("softcap"))

    def complete(self) -> bool:
        return all(q is not None for q in self.q)

    def arrays(self, query_dtype: torch.dtype):
        """(queries [n, L, A, d] in `query_dtype`, keys [n, L, A_kv, d] float32) as numpy."""
        import torch

        if not self.complete():
            missing = [i for i, q in enumerate(self.q) if q is None]
            raise RuntimeError(f"memviz_eager saw no attention call for layers {missing}")
        q = torch.stack(self.q).permute(2, 0, 1, 3)  # [n, L, A, d]
        k = torch.stack(self.k).permute(2, 0, 1, 3)
        return q.to("cpu", query_dtype).numpy(), k.to("cpu", torch.float32).numpy()

    def distances(self):
        """[q, L, A] float32: each head's expected distance back, or None where a layer gave none."""
        import torch

        if any(w is None for w in self.weights):
            return None
        if len({tuple(w.shape) for w in self.weights}) == 1:  # one sum for every layer
            distance = expected_distance(torch.stack(self.weights))  # [L, A, q]
        else:  # sliding layers hold fewer keys
            distance = torch.stack([expected_distance(w) for w in self.weights])
        return distance.permute(2, 0, 1).to("cpu", torch.float32).numpy()


def expected_distance(weights: torch.Tensor) -> torch.Tensor:
    """[..., q] expected t - key of the pass's q queries under weights [..., q, n] (the queries are
    the last q positions, the keys the last n: a sliding layer's cache holds its window only)."""
    import torch

    q, n = weights.shape[-2:]
    back = torch.arange(n - 1, -1, -1, device=weights.device, dtype=weights.dtype)  # n-1 .. 0
    distance = weights @ back  # the last query's distance to each key, weighted
    if q > 1:  # earlier queries sit q-1-i positions before the last
        offset = torch.arange(q - 1, -1, -1, device=weights.device, dtype=weights.dtype)
        distance = distance - offset * weights.sum(-1)
    return distance


@contextmanager
def capturing(sink: QKSink) -> Iterator[QKSink]:
    """Hand this thread's attention calls to `sink` during the block (other threads: untouched)."""
    previous = getattr(_local, "sink", None)
    _local.sink = sink
    try:
        yield sink
    finally:
        _local.sink = previous


def attention_modules(model) -> list:
    """The model's self-attention modules in layer order: those with a layer index and a scaling."""
    found = [m for m in model.modules() if hasattr(m, "layer_idx") and hasattr(m, "scaling")]
    return sorted(found, key=lambda m: int(m.layer_idx))


def dense_reason(model, family: str) -> str | None:
    """Why this model's attention cannot be rebuilt from q and k (None: it can)."""
    if family not in INTERFACE_FAMILIES:
        return f"{family}'s attention does not go through transformers' AttentionInterface"
    if family == "gpt2" and getattr(model.config, "reorder_and_upcast_attn", False):
        return "GPT-2 with reorder_and_upcast_attn uses its own attention path under eager"
    layers = int(model.config.num_hidden_layers)
    if len(attention_modules(model)) != layers:
        return f"memviz found {len(attention_modules(model))} attention modules for {layers} layers"
    return None


def attention_layout(model, family: str, windows: tuple[int | None, ...]) -> dict:
    """What rebuilding a row needs, per layer: scale, sliding window, soft-cap; and the head shapes."""
    modules = attention_modules(model)
    first = modules[0]
    cfg = model.config
    heads = int(cfg.num_attention_heads)
    head_dim = int(getattr(first, "head_dim", None) or first.head_size)
    return {
        "num_heads": heads,
        "num_kv_heads": int(getattr(cfg, "num_key_value_heads", None) or heads),
        "head_dim": head_dim,
        "scale": [1.0 if family in PRESCALED_FAMILIES else float(m.scaling) for m in modules],
        "sliding_window": [None if w is None else int(w) for w in windows],
        "softcap": [
            float(m.attn_logit_softcapping)
            if family in SOFTCAP_FAMILIES and getattr(m, "attn_logit_softcapping", None)
            else None
            for m in modules
        ],
    }
