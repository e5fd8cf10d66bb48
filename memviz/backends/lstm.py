"""The character LSTM language model and its instrumented, gate-by-gate stepping.

`nn.LSTM` does not expose its gates, so `LSTMBackend.step` runs the same cell by hand with the
same weights, in PyTorch's gate order (i, f, g, o), and is tested to equal `nn.LSTM` to 1e-5.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from memviz.backends.base import Encoding, ModelInfo, StepOutput, weights_fingerprint
from memviz.backends.checkpoint import load_safetensors, read_json
from memviz.backends.hook_points import (
    CELL,
    GATES,
    HIDDEN,
    RNN_CELL,
    RNN_GATES,
    RNN_HIDDEN,
    hook_name,
    per_layer,
)
from memviz.errors import CheckpointError

MODEL_TYPE = "memviz-lstm"
DOCUMENT_CHUNK = 2048  # tokens per nn.LSTM call in document_keys (the state is carried between chunks)


class CharTokenizer:
    """One token per character; characters outside the vocabulary map to `unk` and are counted."""

    def __init__(self, tokens: list[str], unk: int) -> None:
        if not tokens:
            raise CheckpointError("vocab.json: empty token list")
        if not 0 <= unk < len(tokens):
            raise CheckpointError(f"vocab.json: unk index {unk} outside 0..{len(tokens) - 1}")
        self.tokens = tokens
        self.unk = unk
        self.index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def from_text(cls, text: str, unk_token: str = "\ufffd") -> CharTokenizer:
        chars = sorted(set(text) - {unk_token})
        return cls([unk_token, *chars], unk=0)

    def encode(self, text: str) -> Encoding:
        ids = [self.index.get(ch, self.unk) for ch in text]
        unknown = sum(1 for ch in text if ch not in self.index)
        return Encoding(ids=ids, unknown_count=unknown)

    def to_json(self) -> dict:
        return {"tokens": self.tokens, "unk": self.unk}


class LSTMLanguageModel(nn.Module):
    """embedding -> nn.LSTM -> linear head; parameter names are the checkpoint's."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, ids: torch.Tensor, state=None):
        out, state = self.lstm(self.embedding(ids), state)
        return self.head(out), state


@dataclass(frozen=True)
class LSTMConfig:
    vocab_size: int
    embedding_dim: int
    hidden_size: int
    num_layers: int

    @classmethod
    def from_json(cls, data: dict, where: Path) -> LSTMConfig:
        if data.get("model_type") != MODEL_TYPE:
            raise CheckpointError(
                f"{where}: model_type is {data.get('model_type')!r}, expected {MODEL_TYPE!r}"
            )
        if data.get("tokenizer", "char") != "char":
            raise CheckpointError(f"{where}: unsupported tokenizer {data.get('tokenizer')!r} (only 'char')")
        try:
            values = {k: int(data[k]) for k in ("vocab_size", "embedding_dim", "hidden_size", "num_layers")}
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: missing or invalid field {exc}") from None
        if min(values.values()) < 1:
            raise CheckpointError(f"{where}: sizes must be positive: {values}")
        return cls(**values)

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
    config = LSTMConfig.from_json(read_json(folder / "config.json", "model configuration"), folder)
    vocab = read_json(folder / "vocab.json", "the character vocabulary")
    tokens, unk = vocab.get("tokens"), vocab.get("unk")
    if (
        not isinstance(tokens, list)
        or not all(isinstance(t, str) for t in tokens)
        or not isinstance(unk, int)
    ):
        raise CheckpointError(f'{folder / "vocab.json"}: expected {{"tokens": [str, ...], "unk": int}}')
    if len(tokens) != config.vocab_size:
        raise CheckpointError(
            f"{folder}: vocab.json has {len(tokens)} tokens, config.json says {config.vocab_size}"
        )
    tokenizer = CharTokenizer(tokens, unk)
    state = load_safetensors(folder / "model.safetensors")
    model = LSTMLanguageModel(config.vocab_size, config.embedding_dim, config.hidden_size, config.num_layers)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        detail = (
            f"missing {missing[:3]}"
            if missing
            else f"wrong shape for {wrong[:3]}"
            if wrong
            else "unexpected tensors"
        )
        raise CheckpointError(f"{folder / 'model.safetensors'}: does not match config.json ({detail})")
    model.load_state_dict(state)
    model.eval()
    return model, tokenizer, config


class LSTMBackend:
    """Steps a character LSTM one token at a time, recording i, f, g, o, c and h of every layer."""

    def __init__(self, model: LSTMLanguageModel, tokenizer: CharTokenizer, name: str, source: str) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        lstm = model.lstm
        self.num_layers = lstm.num_layers
        self.hidden_size = lstm.hidden_size
        # Per layer: W_ih^T, W_hh^T and the summed bias, laid out for row-vector matmuls.
        self._w_ih = [
            getattr(lstm, f"weight_ih_l{k}").detach().t().contiguous() for k in range(self.num_layers)
        ]
        self._w_hh = [
            getattr(lstm, f"weight_hh_l{k}").detach().t().contiguous() for k in range(self.num_layers)
        ]
        self._bias = [
            (getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")).detach()
            for k in range(self.num_layers)
        ]
        self._embedding = model.embedding.weight.detach()
        self._head_w = model.head.weight.detach()
        self._head_b = model.head.bias.detach()
        self.info = ModelInfo(
            name=name,
            source=source,
            architecture="lstm",
            num_layers=self.num_layers,
            hidden_size=self.hidden_size,
            num_heads=0,
            vocab_size=model.embedding.num_embeddings,
            context_size=None,
        )
        self._fingerprint = weights_fingerprint(dict(model.state_dict()), extra=json.dumps(tokenizer.tokens))
        # The kNN-LM key: the top layer's h after reading a token.
        self.memory_key_point = hook_name(RNN_HIDDEN, self.num_layers - 1)
        self.memory_key_dim = self.hidden_size
        self.reset()

    @classmethod
    def from_folder(cls, folder: Path, name: str | None = None) -> LSTMBackend:
        model, tokenizer, _ = load_lstm(folder)
        return cls(model, tokenizer, name=name or Path(folder).name, source=str(folder))

    def encode(self, text: str) -> Encoding:
        return self.tokenizer.encode(text)

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.tokens[token_id]

    def fingerprint(self) -> str:
        return self._fingerprint

    def hook_points(self) -> tuple[str, ...]:
        return per_layer((RNN_GATES, RNN_CELL, RNN_HIDDEN), self.num_layers)

    @property
    def device(self) -> str:
        return str(self._embedding.device)

    @property
    def position(self) -> int:
        return self._position

    def reset(self) -> None:
        zeros = torch.zeros(self.hidden_size)
        self._h = [zeros.clone() for _ in range(self.num_layers)]
        self._c = [zeros.clone() for _ in range(self.num_layers)]
        self._position = 0

    @torch.inference_mode()
    def step(self, token_id: int) -> StepOutput:
        H = self.hidden_size
        x = self._embedding[token_id]
        gates = np.empty((self.num_layers, 4, H), dtype=np.float32)
        cells = np.empty((self.num_layers, H), dtype=np.float32)
        hiddens = np.empty((self.num_layers, H), dtype=np.float32)
        for k in range(self.num_layers):
            z = torch.addmm(self._bias[k].unsqueeze(0), x.unsqueeze(0), self._w_ih[k])
            z = torch.addmm(z, self._h[k].unsqueeze(0), self._w_hh[k]).squeeze(0)
            i = torch.sigmoid(z[:H])
            f = torch.sigmoid(z[H : 2 * H])
            g = torch.tanh(z[2 * H : 3 * H])
            o = torch.sigmoid(z[3 * H :])
            c = f * self._c[k] + i * g
            h = o * torch.tanh(c)
            self._c[k], self._h[k] = c, h
            gates[k] = torch.stack((i, f, g, o)).numpy()
            cells[k] = c.numpy()
            hiddens[k] = h.numpy()
            x = h
        logits = torch.addmv(self._head_b, self._head_w, x)
        self._position += 1
        return StepOutput(
            logits=logits,
            memory_key=hiddens[-1].copy(),
            internals={GATES: gates, CELL: cells, HIDDEN: hiddens},
        )

    def document_keys(self, token_ids: list[int]) -> Iterator[np.ndarray]:
        """nn.LSTM over the document in chunks, its own state carried between them (the step state is
        not touched): the top layer's h after each of tokens 0 .. n-2."""
        ids = list(token_ids)[:-1]
        state = None
        for s in range(0, len(ids), DOCUMENT_CHUNK):
            with torch.inference_mode():  # not around the yield: the consumer's code runs there
                x = torch.tensor([ids[s : s + DOCUMENT_CHUNK]], dtype=torch.long)
                out, state = self.model.lstm(self.model.embedding(x), state)
                keys = out[0].float().numpy()
            yield from keys
