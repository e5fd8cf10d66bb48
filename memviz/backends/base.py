"""What every backend hands to the Session: one StepOutput per token read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from memviz.backends.hook_points import INTERNAL_OF, parse_hook_name

if TYPE_CHECKING:  # torch takes seconds to import: the window must not wait for it (issue 7)
    import torch


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str  # a folder path or a Hugging Face id
    architecture: str  # the family's name (backends.families): "gpt2", "llama", ..., "lstm"
    num_layers: int
    hidden_size: int
    num_heads: int  # query heads; 0 for a recurrent model
    vocab_size: int
    context_size: int | None  # None: no window (the LSTM)
    # Recurrent models: cell, gate_names, layer_sizes, head, labels, tokenizer (in the trace manifest).
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    kind: str = ""  # "transformer" or "recurrent"; "" = from the family (backends.families.kind_of)
    num_kv_heads: int | None = None  # key/value heads (grouped-query attention); None = num_heads
    sliding_window: tuple[int | None, ...] | None = None  # per layer: its window, None = full attention
    attn_softcap: float | None = None  # attention logits soft-capped at this value (Gemma 2)
    dtype: str = "float32"  # the weights' dtype, as torch names it
    # Tokens every run starts with, as the tokenizer adds them (Llama's and Gemma's BOS); () = none.
    start_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.kind:
            from memviz.backends.families import kind_of

            object.__setattr__(self, "kind", kind_of(self.architecture, self.num_heads))

    def kv_head_of(self, head: int) -> int:
        """The key/value head a query head reads (query heads share one in groups of A // A_kv)."""
        kv = self.num_kv_heads or self.num_heads
        return head // max(1, self.num_heads // max(1, kv))

    def as_manifest(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "architecture": self.architecture,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "num_heads": self.num_heads,
            "vocab_size": self.vocab_size,
            "kind": self.kind,
            **self.transformer_manifest(),
            **self.extra,
        }

    def transformer_manifest(self) -> dict:
        """Grouped-query heads, per-layer sliding windows, soft-capping and dtype ({} if recurrent)."""
        if self.kind != "transformer":
            return {}
        return {
            "num_kv_heads": self.num_kv_heads or self.num_heads,
            "sliding_window": list(self.sliding_window or [None] * self.num_layers),
            "attn_softcap": self.attn_softcap,
            "dtype": self.dtype,
            **({"start_ids": list(self.start_ids)} if self.start_ids else {}),
        }


@dataclass
class Encoding:
    ids: list[int]
    unknown_count: int = 0  # characters the tokenizer had to map to its unknown token


@dataclass
class StepOutput:
    """The model's state after reading one token."""

    logits: torch.Tensor | None  # [V], float32; None for a classifier (no next-token distribution)
    memory_key: np.ndarray  # [D], float32: the kNN-LM key for this position
    internals: dict[str, np.ndarray] = field(default_factory=dict)
    # keys from backends.hook_points: a classifier's PREDICTION [C] (label probabilities so far); LSTM: GATES [L,4,H], CELL [L,H], HIDDEN [L,H];
    # GPT-2: ATTENTION_ROW [L,A,t+1] (the current query's row in every layer and head)

    def internal(self, hook_point: str) -> np.ndarray:
        """One hook point's value at this step, by name ("rnn.1.cell" -> internals["cell"][1])."""
        template, layer = parse_hook_name(hook_point)
        key = INTERNAL_OF.get(template)
        if key is None or key not in self.internals:
            raise KeyError(f"this step records no {hook_point!r}")
        return self.internals[key][layer]


class Backend(Protocol):
    """A model family behind one face: the Session steps it, the memory store asks it for keys.

    Everything that names a module inside the model stays behind this protocol.
    """

    info: ModelInfo
    memory_key_point: str  # the hook point whose value is the kNN-LM key (a name from hook_points)
    memory_key_dim: int  # floats in a memory key: a store is created without running the model

    def encode(self, text: str) -> Encoding: ...

    def token_text(self, token_id: int) -> str: ...

    def reset(self) -> None: ...

    def step(self, token_id: int) -> StepOutput: ...

    @property
    def position(self) -> int: ...

    @property
    def device(self) -> str: ...  # where the model runs, as torch names it ("cpu")

    def fingerprint(self) -> str: ...

    def hook_points(self) -> tuple[str, ...]:
        """The named internals this backend records (memory_key_point among them)."""
        ...

    def document_keys(self, token_ids: list[int]) -> Iterator[np.ndarray]:
        """The memory keys after tokens 0 .. n-2 of a document, in order, lazily, batched.

        Leaves the step state (position, cache, recurrent state) and the model's hooks as they were.
        """
        ...

    def restore(self, token_ids: Sequence[int], states: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Reset, then put the step state where reading `token_ids` one step each would leave it,
        under the interventions set, without stepping (no StepOutput, nothing recorded). `states`:
        the recorded internals of those steps where a run has them (the trace's `cell`, `hidden`
        [n, L, H]); a recurrent model takes its state from their last row (exact), a transformer
        fills its KV cache with one batched forward pass. Returns the memory key after each of the
        tokens ([n, memory_key_dim], float32), as `step` would have (the Session keeps them)."""
        ...

    def set_interventions(self, specs: Sequence) -> None:
        """Steps from now on carry out these interventions (() = none); `document_keys` does not.

        Specs are memviz.core.interventions' dataclasses, already checked against this model; a
        backend reads their fields (kind, layer, head, unit, value, step, width, start, end).
        """
        ...


def weights_fingerprint(tensors: dict[str, torch.Tensor], extra: str = "") -> str:
    """A short, stable id of a model's weights: enough to tell two models apart.

    Hashes names, shapes and a strided sample of every tensor, so it is fast on large models.
    """
    import hashlib

    import torch

    h = hashlib.sha256(extra.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().reshape(-1)
        h.update(name.encode())
        h.update(str(tuple(tensors[name].shape)).encode())
        stride = max(1, t.numel() // 4096)
        h.update(t[::stride].to(torch.float32).cpu().numpy().tobytes())
    return h.hexdigest()[:16]
