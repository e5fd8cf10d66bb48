"""The character LSTM language model (what `memviz train lstm` trains) and its backend.

The stepping lives in `memviz.backends.recurrent` (LSTM and GRU, exact gates); this module keeps the
first checkpoint format, `memviz-lstm` (DESIGN.md, "The LSTM checkpoint format"), and the names that
code and tests import: `LSTMLanguageModel`, `CharTokenizer`, `save_lstm_checkpoint`, `load_lstm`,
`LSTMBackend`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from memviz.backends.checkpoint import read_json
from memviz.backends.recurrent import (
    LSTM_MODEL_TYPE,
    LSTMLanguageModel,
    RecurrentBackend,
    RNNConfig,
    load_checked_weights,
)
from memviz.backends.tokenizers import CharTokenizer, load_tokenizer

__all__ = [
    "CharTokenizer",
    "DOCUMENT_CHUNK",
    "LSTMBackend",
    "LSTMConfig",
    "LSTMLanguageModel",
    "MODEL_TYPE",
    "load_lstm",
    "save_lstm_checkpoint",
]

MODEL_TYPE = LSTM_MODEL_TYPE
DOCUMENT_CHUNK = 2048  # tokens per nn.LSTM call in document_keys (the state is carried between chunks)


@dataclass(frozen=True)
class LSTMConfig:
    vocab_size: int
    embedding_dim: int
    hidden_size: int
    num_layers: int

    @classmethod
    def from_json(cls, data: dict, where: Path) -> LSTMConfig:
        if data.get("model_type") != MODEL_TYPE:
            raise_type = data.get("model_type")
            from memviz.errors import CheckpointError

            raise CheckpointError(f"{where}: model_type is {raise_type!r}, expected {MODEL_TYPE!r}")
        config = RNNConfig.from_json(data, where)  # the strict checks: whole numbers, bounds, tokenizer
        return cls(config.vocab_size, config.embedding_dim, config.layer_sizes[0], len(config.layer_sizes))

    def to_json(self) -> dict:
        return {"model_type": MODEL_TYPE, **self.__dict__, "tokenizer": "char"}


def save_lstm_checkpoint(model: LSTMLanguageModel, tokenizer: CharTokenizer, folder: Path) -> None:
    """Write a model in the documented checkpoint format (config.json, vocab.json, model.safetensors)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = LSTMConfig(
        vocab_size=model.embedding.num_embeddings,
        embedding_dim=model.embedding.embedding_dim,
        hidden_size=model.lstm.hidden_size,
        num_layers=model.lstm.num_layers,
    )
    (folder / "config.json").write_text(json.dumps(config.to_json(), indent=2))
    (folder / "vocab.json").write_text(json.dumps(tokenizer.to_json(), ensure_ascii=False))
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(folder / "model.safetensors"))


def load_lstm(folder: Path) -> tuple[LSTMLanguageModel, CharTokenizer, LSTMConfig]:
    folder = Path(folder)
    data = read_json(folder / "config.json", "model configuration")
    config = LSTMConfig.from_json(data, folder)
    tokenizer = load_tokenizer(folder, "char", config.vocab_size)
    rnn = RNNConfig.from_json(data, folder)
    # The header is checked against config.json before the model is built: no absurd allocation.
    state = load_checked_weights(folder / "model.safetensors", rnn.expected_shapes())
    model = LSTMLanguageModel(config.vocab_size, config.embedding_dim, config.hidden_size, config.num_layers)
    model.load_state_dict(state)
    model.eval()
    return model, tokenizer, config


class LSTMBackend(RecurrentBackend):
    """The recurrent backend under its first name (an LSTM language model)."""

    def __init__(self, model: nn.Module, tokenizer, name: str, source: str, **kwargs) -> None:
        super().__init__(model, tokenizer, name=name, source=source, **kwargs)

    @classmethod
    def from_folder(cls, folder: Path, name: str | None = None) -> LSTMBackend:
        return super().from_folder(folder, name=name)

    def _document_chunk(self) -> int:
        return DOCUMENT_CHUNK  # read here, so that tests can make it small on this module
