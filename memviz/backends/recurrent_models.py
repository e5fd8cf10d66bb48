"""The recurrent models as PyTorch modules: the memviz-lstm language model, RecurrentModel (one
nn.LSTM / nn.GRU per layer, sizes may differ) and from_modules for your own parts."""

from __future__ import annotations

import torch
from torch import nn

from memviz.backends.recurrent_config import RNNConfig
from memviz.errors import CheckpointError


class LSTMLanguageModel(nn.Module):
    """embedding -> nn.LSTM -> linear head; parameter names are the checkpoint's."""

    cell = "lstm"

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    @property
    def layer_sizes(self) -> list[int]:
        return [self.lstm.hidden_size] * self.lstm.num_layers

    def layer_params(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(
            getattr(self.lstm, f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )

    def run(self, ids: torch.Tensor, state=None):
        """The top layer's outputs [B, T, H]: one nn.LSTM call over all layers."""
        return self.lstm(self.embedding(ids), state)

    def forward(self, ids: torch.Tensor, state=None):
        out, state = self.run(ids, state)
        return self.head(out), state


class RecurrentModel(nn.Module):
    """embedding -> one nn.LSTM / nn.GRU per layer (sizes may differ) -> linear head."""

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = config
        self.cell = config.cell
        self.layer_sizes = list(config.layer_sizes)
        module = nn.LSTM if config.cell == "lstm" else nn.GRU
        inputs = (config.embedding_dim, *config.layer_sizes[:-1])
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.layers = nn.ModuleList(
            module(n_in, H, batch_first=True) for n_in, H in zip(inputs, config.layer_sizes, strict=True)
        )
        self.head = nn.Linear(config.layer_sizes[-1], config.output_size)

    def layer_params(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.layers[k]
        return m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0

    def run(self, ids: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        """The top layer's outputs [B, T, H] over a batch of sequences, batched in time per layer."""
        x = self.embedding(ids)
        state = state or [None] * len(self.layers)
        new = []
        for layer, s in zip(self.layers, state, strict=True):
            x, s = layer(x, s)
            new.append(s)
        return x, new

    def forward(self, ids: torch.Tensor, state: list | None = None):
        out, state = self.run(ids, state)
        return self.head(out), state

    def file_state(self) -> dict[str, torch.Tensor]:
        """The tensors under the file format's names."""
        out = {"embedding.weight": self.embedding.weight}
        for k in range(len(self.layers)):
            for name, tensor in zip(
                ("weight_ih", "weight_hh", "bias_ih", "bias_hh"), self.layer_params(k), strict=True
            ):
                out[f"{self.cell}.{name}_l{k}"] = tensor
        out["head.weight"], out["head.bias"] = self.head.weight, self.head.bias
        return {k: v.detach().contiguous().cpu().float() for k, v in out.items()}

    def load_file_state(self, state: dict[str, torch.Tensor]) -> None:
        mine = {
            "embedding.weight": "embedding.weight",
            "head.weight": "head.weight",
            "head.bias": "head.bias",
        }
        for k in range(len(self.layers)):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                mine[f"{self.cell}.{name}_l{k}"] = f"layers.{k}.{name}_l0"
        self.load_state_dict({mine[k]: v for k, v in state.items()})


def from_modules(
    embedding: nn.Embedding, rnn: nn.Module, head: nn.Linear, labels: list[str] | None = None
) -> RecurrentModel:
    """A RecurrentModel from your own nn.Embedding, nn.LSTM / nn.GRU (any number of layers,
    one direction, no projections) and nn.Linear head; `labels` makes the head a classifier."""
    if not isinstance(rnn, (nn.LSTM, nn.GRU)):
        raise CheckpointError(f"expected an nn.LSTM or nn.GRU, got {type(rnn).__name__}")
    if rnn.bidirectional or getattr(rnn, "proj_size", 0):
        raise CheckpointError(
            "bidirectional or projected recurrent layers cannot be stepped one token at a time"
        )
    cell = "lstm" if isinstance(rnn, nn.LSTM) else "gru"
    config = RNNConfig(
        cell=cell,
        vocab_size=embedding.num_embeddings,
        embedding_dim=embedding.embedding_dim,
        layer_sizes=(rnn.hidden_size,) * rnn.num_layers,
        head="classifier" if labels else "lm",
        labels=tuple(labels or ()),
    )
    model = RecurrentModel(config)
    state = {"embedding.weight": embedding.weight, "head.weight": head.weight}
    state["head.bias"] = head.bias if head.bias is not None else torch.zeros(head.out_features)
    G = len(config.gate_names)
    for k in range(rnn.num_layers):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            value = getattr(rnn, f"{name}_l{k}", None)
            state[f"{cell}.{name}_l{k}"] = value if value is not None else torch.zeros(G * rnn.hidden_size)
    model.load_file_state({k: v.detach().float().cpu() for k, v in state.items()})
    return model.eval()
