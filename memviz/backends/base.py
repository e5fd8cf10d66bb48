"""What every backend hands to the Session: one StepOutput per token read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # torch takes seconds to import: the window must not wait for it (issue 7)
    import torch


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str  # a folder path or a Hugging Face id
    architecture: str  # "lstm" or "gpt2"
    num_layers: int
    hidden_size: int
    num_heads: int  # 0 for the LSTM
    vocab_size: int
    context_size: int | None  # None: no window (the LSTM)

    def as_manifest(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "architecture": self.architecture,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "num_heads": self.num_heads,
            "vocab_size": self.vocab_size,
        }


@dataclass
class Encoding:
    ids: list[int]
    unknown_count: int = 0  # characters the tokenizer had to map to its unknown token


@dataclass
class StepOutput:
    """The model's state after reading one token."""

    logits: torch.Tensor  # [V], float32
    memory_key: np.ndarray  # [D], float32: the kNN-LM key for this position
    internals: dict[str, np.ndarray] = field(default_factory=dict)
    # LSTM: gates [L,4,H], cell [L,H], hidden [L,H]
    # GPT-2: attention_row [L,A,t+1] (the current query's row in every layer and head)


class Backend(Protocol):
    info: ModelInfo

    def encode(self, text: str) -> Encoding: ...

    def token_text(self, token_id: int) -> str: ...

    def reset(self) -> None: ...

    def step(self, token_id: int) -> StepOutput: ...

    @property
    def position(self) -> int: ...

    def fingerprint(self) -> str: ...


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
