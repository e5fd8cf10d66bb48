"""The recurrent family: LSTM and GRU models, stepped gate by gate with their exact equations.

`nn.LSTM` and `nn.GRU` do not expose their gates, so `RecurrentBackend.step` runs the same cells by
hand with the same weights, in PyTorch's conventions:

- LSTM, gates (i, f, g, o): z = W_ih x + b_ih + W_hh h + b_hh, split in four; i, f, o = sigmoid,
  g = tanh; c = f*c + i*g; h = o*tanh(c).
- GRU, gates (r, z, n): r, z = sigmoid(W_i· x + b_i· + W_h· h + b_h·); n = tanh(W_in x + b_in +
  r*(W_hn h + b_hn)); h = (1 - z)*n + z*h.

Layers may differ in size. A step's internals are [L, G, H] / [L, H] with H the widest layer; a
narrower layer's units beyond its size are padding (0), and the manifest's `layer_sizes` says how many
are real. A classifier head (labels in config.json) answers, after every token, what the model would
say if the text ended there: sigmoid for one label, softmax for several (`prediction`, [C]).

The folder format `memviz-rnn` (DESIGN.md, "The recurrent checkpoint format") extends `memviz-lstm`;
both load here. Every size in config.json is checked against the safetensors header before anything
is allocated, and the weights must be finite float32.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from memviz.backends.base import Encoding, ModelInfo, StepOutput, weights_fingerprint
from memviz.backends.checkpoint import load_safetensors, read_json, refuse_pickle_only
from memviz.backends.hook_points import (
    CELL,
    GATES,
    GRU_GATE_NAMES,
    HIDDEN,
    LSTM_GATE_NAMES,
    PREDICTION,
    RNN_CELL,
    RNN_GATES,
    RNN_HIDDEN,
    hook_name,
    per_layer,
)
from memviz.backends.recurrent_interventions import RecurrentInterventions
from memviz.backends.tokenizers import TOKENIZER_KINDS, Tokenizer, load_tokenizer, save_tokenizer
from memviz.errors import CheckpointError

MODEL_TYPE = "memviz-rnn"
LSTM_MODEL_TYPE = "memviz-lstm"  # the first format: char LSTM language models, equal layer sizes
MODEL_TYPES = (MODEL_TYPE, LSTM_MODEL_TYPE)
CELLS = {"lstm": LSTM_GATE_NAMES, "gru": GRU_GATE_NAMES}
HEADS = ("lm", "classifier")
MAX_SIZE = 1 << 20  # a bound on any one dimension: far above a desktop model, far below an absurd one
MAX_LAYERS = 64
DOCUMENT_CHUNK = 2048  # tokens per nn.LSTM / nn.GRU call in document_keys (the state carried between)


def _whole(data: dict, key: str, where: Path, low: int = 1, high: int = MAX_SIZE) -> int:
    value = data.get(key)
    if value is None:
        raise CheckpointError(f"{where}: config.json has no {key!r}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{where}: config.json {key} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise CheckpointError(f"{where}: config.json {key} = {value} is outside {low}..{high}")
    return value


@dataclass(frozen=True)
class RNNConfig:
    cell: str
    vocab_size: int
    embedding_dim: int
    layer_sizes: tuple[int, ...]
    tokenizer: str = "char"
    head: str = "lm"
    labels: tuple[str, ...] = ()
    model_type: str = MODEL_TYPE
    extra: dict = field(default_factory=dict, compare=False)  # other keys, kept as they were

    @property
    def gate_names(self) -> tuple[str, ...]:
        return CELLS[self.cell]

    @property
    def output_size(self) -> int:
        return self.vocab_size if self.head == "lm" else len(self.labels)

    @property
    def uniform(self) -> bool:
        return len(set(self.layer_sizes)) == 1

    @classmethod
    def from_json(cls, data: dict, where: Path) -> RNNConfig:
        model_type = data.get("model_type")
        if model_type not in MODEL_TYPES:
            raise CheckpointError(
                f"{where}: model_type is {model_type!r}, expected {MODEL_TYPE!r} or {LSTM_MODEL_TYPE!r}"
            )
        vocab_size = _whole(data, "vocab_size", where)
        embedding_dim = _whole(data, "embedding_dim", where)
        cell = data.get("cell", "lstm")
        if cell not in CELLS:
            raise CheckpointError(f"{where}: unsupported cell {cell!r} (memviz reads 'lstm' and 'gru')")
        if "layer_sizes" in data and model_type == MODEL_TYPE:
            sizes = data["layer_sizes"]
            if not isinstance(sizes, list) or not 1 <= len(sizes) <= MAX_LAYERS:
                raise CheckpointError(f"{where}: layer_sizes must be a list of 1..{MAX_LAYERS} sizes")
            layer_sizes = tuple(
                _whole({f"layer_sizes[{k}]": s}, f"layer_sizes[{k}]", where) for k, s in enumerate(sizes)
            )
        else:
            hidden = _whole(data, "hidden_size", where)
            layer_sizes = (hidden,) * _whole(data, "num_layers", where, high=MAX_LAYERS)
        tokenizer = data.get("tokenizer", "char")
        allowed = ("char",) if model_type == LSTM_MODEL_TYPE else TOKENIZER_KINDS
        if tokenizer not in allowed:
            raise CheckpointError(
                f"{where}: unsupported tokenizer {tokenizer!r} (this format reads {', '.join(allowed)})"
            )
        head = data.get("head", "lm") if model_type == MODEL_TYPE else "lm"
        if head not in HEADS:
            raise CheckpointError(f"{where}: unsupported head {head!r} (memviz reads 'lm' and 'classifier')")
        labels: tuple[str, ...] = ()
        if head == "classifier":
            raw = data.get("labels")
            if not isinstance(raw, list) or not raw or not all(isinstance(x, str) for x in raw):
                raise CheckpointError(f"{where}: a classifier needs 'labels', a list of label names")
            if len(set(raw)) != len(raw):
                raise CheckpointError(f"{where}: labels repeat a name: {raw}")
            labels = tuple(raw)
        known = {"model_type", "vocab_size", "embedding_dim", "hidden_size", "num_layers", "layer_sizes"}
        known |= {"cell", "tokenizer", "head", "labels"}
        return cls(
            cell=cell,
            vocab_size=vocab_size,
            embedding_dim=embedding_dim,
            layer_sizes=layer_sizes,
            tokenizer=tokenizer,
            head=head,
            labels=labels,
            model_type=model_type,
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_json(self) -> dict:
        if self.model_type == LSTM_MODEL_TYPE:
            return {
                "model_type": LSTM_MODEL_TYPE,
                "vocab_size": self.vocab_size,
                "embedding_dim": self.embedding_dim,
                "hidden_size": self.layer_sizes[0],
                "num_layers": len(self.layer_sizes),
                "tokenizer": "char",
            }
        data: dict = {
            "model_type": MODEL_TYPE,
            "cell": self.cell,
            "vocab_size": self.vocab_size,
            "embedding_dim": self.embedding_dim,
            "layer_sizes": list(self.layer_sizes),
            "tokenizer": self.tokenizer,
            "head": self.head,
        }
        if self.head == "classifier":
            data["labels"] = list(self.labels)
        return {**data, **self.extra}

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """The weights file's tensor names and shapes (PyTorch's nn.LSTM / nn.GRU names per layer)."""
        G, prefix = len(self.gate_names), self.cell
        shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (self.vocab_size, self.embedding_dim)}
        inputs = (self.embedding_dim, *self.layer_sizes[:-1])
        for k, (n_in, H) in enumerate(zip(inputs, self.layer_sizes, strict=True)):
            shapes[f"{prefix}.weight_ih_l{k}"] = (G * H, n_in)
            shapes[f"{prefix}.weight_hh_l{k}"] = (G * H, H)
            shapes[f"{prefix}.bias_ih_l{k}"] = (G * H,)
            shapes[f"{prefix}.bias_hh_l{k}"] = (G * H,)
        shapes["head.weight"] = (self.output_size, self.layer_sizes[-1])
        shapes["head.bias"] = (self.output_size,)
        return shapes


def check_weight_headers(path: Path, expected: dict[str, tuple[int, ...]]) -> None:
    """Compare names, shapes and dtypes in the safetensors header with the config: nothing loaded yet."""
    from safetensors import SafetensorError, safe_open

    refuse_pickle_only(path.parent)
    try:
        with safe_open(str(path), framework="np") as f:
            found = {
                name: (tuple(f.get_slice(name).get_shape()), f.get_slice(name).get_dtype())
                for name in f.keys()
            }  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"{path}: corrupt or unreadable safetensors file ({first_line})") from None
    missing = sorted(set(expected) - set(found))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k][0])
    unexpected = sorted(set(found) - set(expected))
    if missing or wrong or unexpected:
        if missing:
            detail = f"missing {missing[:3]}"
        elif wrong:
            name = wrong[0]
            detail = f"wrong shape for {wrong[:3]} ({name}: file {list(found[name][0])}, config {list(expected[name])})"
        else:
            detail = f"unexpected tensors {unexpected[:3]}"
        raise CheckpointError(f"{path}: does not match config.json ({detail})")
    odd = sorted(k for k, (_, dtype) in found.items() if dtype != "F32")
    if odd:
        raise CheckpointError(
            f"{path}: {odd[0]} is {found[odd[0]][1]}; recurrent weights must be float32 "
            "(convert with tensor.float() before saving)"
        )


def load_checked_weights(path: Path, expected: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    check_weight_headers(path, expected)
    state = load_safetensors(path)
    for name, tensor in state.items():
        if not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: {name} holds {bad} NaN or infinite value(s)")
    return state


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


def save_recurrent(
    model: nn.Module, tokenizer: Tokenizer, folder: Path, head: str = "lm", labels: list[str] | None = None
) -> Path:
    """Write any recurrent model here (RecurrentModel or the nn.LSTM language model) as a memviz-rnn
    folder: config.json, vocab.json or tokenizer.json, model.safetensors."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = config_of(model, tokenizer, head, labels)
    tensors = file_state_of(model)
    expected = config.expected_shapes()
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if found != expected:
        raise CheckpointError(
            f"{folder}: the model's tensors do not match its config ({found} vs {expected})"
        )
    (folder / "config.json").write_text(json.dumps(config.to_json(), indent=2))
    save_tokenizer(tokenizer, folder)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def config_of(
    model: nn.Module, tokenizer: Tokenizer, head: str = "lm", labels: list[str] | None = None
) -> RNNConfig:
    if isinstance(model, RecurrentModel):
        import dataclasses

        labels_ = tuple(labels) if head == "classifier" and labels is not None else model.config.labels
        return dataclasses.replace(
            model.config, head=head, labels=labels_ if head == "classifier" else (), tokenizer=tokenizer.kind
        )
    sizes = tuple(int(s) for s in model.layer_sizes)
    return RNNConfig(
        cell=model.cell,
        vocab_size=model.embedding.num_embeddings,
        embedding_dim=model.embedding.embedding_dim,
        layer_sizes=sizes,
        tokenizer=tokenizer.kind,
        head=head,
        labels=tuple(labels or ()),
    )


def file_state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    if isinstance(model, RecurrentModel):
        return model.file_state()
    out = {
        "embedding.weight": model.embedding.weight,
        "head.weight": model.head.weight,
        "head.bias": model.head.bias,
    }
    for k in range(len(model.layer_sizes)):
        for name, t in zip(
            ("weight_ih", "weight_hh", "bias_ih", "bias_hh"), model.layer_params(k), strict=True
        ):
            out[f"{model.cell}.{name}_l{k}"] = t
    return {k: v.detach().contiguous().cpu().float() for k, v in out.items()}


def load_recurrent(folder: Path) -> tuple[nn.Module, Tokenizer, RNNConfig]:
    """A memviz-rnn or memviz-lstm folder: (model, tokenizer, config). memviz-lstm loads as the
    nn.LSTM language model it was saved from."""
    folder = Path(folder)
    config = RNNConfig.from_json(read_json(folder / "config.json", "model configuration"), folder)
    tokenizer = load_tokenizer(folder, config.tokenizer, config.vocab_size)
    state = load_checked_weights(folder / "model.safetensors", config.expected_shapes())
    if config.model_type == LSTM_MODEL_TYPE:
        model: nn.Module = LSTMLanguageModel(
            config.vocab_size, config.embedding_dim, config.layer_sizes[0], len(config.layer_sizes)
        )
        model.load_state_dict(state)
    else:
        model = RecurrentModel(config)
        model.load_file_state(state)
    return model.eval(), tokenizer, config


class RecurrentBackend:
    """Steps an LSTM or GRU one token at a time, recording every layer's gates, h (and c)."""

    family = "recurrent"

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        name: str,
        source: str,
        head: str = "lm",
        labels: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.cell = model.cell
        self.gate_names = CELLS[self.cell]
        self.layer_sizes = [int(s) for s in model.layer_sizes]
        self.num_layers = len(self.layer_sizes)
        self.hidden_size = max(self.layer_sizes)  # the internals' width (narrower layers padded)
        self.head = head
        self.labels = tuple(labels)
        if head == "classifier" and model.head.out_features != len(self.labels):
            raise CheckpointError(
                f"{source}: {model.head.out_features} outputs but {len(self.labels)} labels"
            )
        # Per layer: W_ih^T, W_hh^T (row-vector matmuls) and the biases.
        params = [tuple(t.detach() for t in model.layer_params(k)) for k in range(self.num_layers)]
        self._w_ih = [p[0].t().contiguous() for p in params]
        self._w_hh = [p[1].t().contiguous() for p in params]
        if self.cell == "lstm":
            self._bias = [p[2] + p[3] for p in params]
        else:  # GRU: r, z share the summed bias; n keeps b_hn inside r * (...)
            self._b_ih = [p[2] for p in params]
            self._b_hh = [p[3] for p in params]
        self._embedding = model.embedding.weight.detach()
        self._head_w = model.head.weight.detach()
        self._head_b = model.head.bias.detach()
        extra = {
            "cell": self.cell,
            "gate_names": list(self.gate_names),
            "layer_sizes": list(self.layer_sizes),
            "head": head,
            "tokenizer": getattr(tokenizer, "kind", "char"),
        }
        if head == "classifier":
            extra["labels"] = list(self.labels)
        self.info = ModelInfo(
            name=name,
            source=source,
            architecture=self.cell,
            num_layers=self.num_layers,
            hidden_size=self.hidden_size,
            num_heads=0,
            vocab_size=model.embedding.num_embeddings,
            context_size=None,
            extra=extra,
        )
        self._fingerprint = weights_fingerprint(dict(model.state_dict()), extra=json.dumps(tokenizer.tokens))
        # The kNN-LM key: the top layer's h after reading a token.
        self.memory_key_point = hook_name(RNN_HIDDEN, self.num_layers - 1)
        self.memory_key_dim = self.layer_sizes[-1]
        self._plan = RecurrentInterventions()  # clamps, resets, context window (set_interventions)
        self.logit_lens = False  # True (an lm head): internals also hold LENS_LOGITS (backends.logit_lens)
        self.reset()

    @classmethod
    def from_folder(cls, folder: Path, name: str | None = None) -> RecurrentBackend:
        model, tokenizer, config = load_recurrent(folder)
        return cls(
            model,
            tokenizer,
            name=name or Path(folder).name,
            source=str(folder),
            head=config.head,
            labels=config.labels,
        )

    def encode(self, text: str) -> Encoding:
        return self.tokenizer.encode(text)

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.tokens[token_id]

    def fingerprint(self) -> str:
        return self._fingerprint

    def hook_points(self) -> tuple[str, ...]:
        kinds = (RNN_GATES, RNN_CELL, RNN_HIDDEN) if self.cell == "lstm" else (RNN_GATES, RNN_HIDDEN)
        return per_layer(kinds, self.num_layers)

    @property
    def device(self) -> str:
        return str(self._embedding.device)

    @property
    def position(self) -> int:
        return self._position

    def reset(self) -> None:
        self._zero_state()
        self._position = 0
        self._ids: list[int] = []  # every token read: context:W rebuilds the state from the last W
        self._last_reset = 0  # the step before which reset:S last zeroed the state

    def _zero_state(self) -> None:
        self._h = [torch.zeros(H) for H in self.layer_sizes]
        self._c = [torch.zeros(H) for H in self.layer_sizes]

    def set_interventions(self, specs) -> None:
        """Steps from now on carry out these specs (memviz.core.interventions; () = none)."""
        self._plan = RecurrentInterventions(specs)

    def _prepare_state(self, token_id: int) -> None:
        """reset:S and context:W act on the state before the step reads its token."""
        t = self._position
        self._ids.append(token_id)
        if t in self._plan.resets:
            self._zero_state()
            self._last_reset = t
        if self._plan.window is not None:
            self._zero_state()
            layer = self._lstm_layer if self.cell == "lstm" else self._gru_layer
            for token in self._ids[self._plan.window_start(t, self._last_reset) : t]:
                x = self._embedding[token]
                for k in range(self.num_layers):
                    _, x = layer(k, x)

    def _lstm_layer(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        H = self.layer_sizes[k]
        z = torch.addmm(self._bias[k].unsqueeze(0), x.unsqueeze(0), self._w_ih[k])
        z = torch.addmm(z, self._h[k].unsqueeze(0), self._w_hh[k]).squeeze(0)
        i = torch.sigmoid(z[:H])
        f = torch.sigmoid(z[H : 2 * H])
        g = torch.tanh(z[2 * H : 3 * H])
        o = torch.sigmoid(z[3 * H :])
        c = self._plan.clamp("cell", k, f * self._c[k] + i * g)
        h = self._plan.clamp("hidden", k, o * torch.tanh(c))
        self._c[k], self._h[k] = c, h
        return torch.stack((i, f, g, o)), h

    def _gru_layer(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        H = self.layer_sizes[k]
        gi = torch.addmm(self._b_ih[k].unsqueeze(0), x.unsqueeze(0), self._w_ih[k]).squeeze(0)
        gh = torch.addmm(self._b_hh[k].unsqueeze(0), self._h[k].unsqueeze(0), self._w_hh[k]).squeeze(0)
        r = torch.sigmoid(gi[:H] + gh[:H])
        z = torch.sigmoid(gi[H : 2 * H] + gh[H : 2 * H])
        n = torch.tanh(gi[2 * H :] + r * gh[2 * H :])
        h = self._plan.clamp("hidden", k, (1 - z) * n + z * self._h[k])
        self._h[k] = h
        return torch.stack((r, z, n)), h

    @torch.inference_mode()
    def step(self, token_id: int) -> StepOutput:
        L, W, G = self.num_layers, self.hidden_size, len(self.gate_names)
        self._prepare_state(token_id)
        x = self._embedding[token_id]
        gates = np.zeros((L, G, W), dtype=np.float32)
        hiddens = np.zeros((L, W), dtype=np.float32)
        cells = np.zeros((L, W), dtype=np.float32) if self.cell == "lstm" else None
        layer = self._lstm_layer if self.cell == "lstm" else self._gru_layer
        layer_h: list[torch.Tensor] = []
        for k in range(L):
            H = self.layer_sizes[k]
            g, x = layer(k, x)
            layer_h.append(x)
            gates[k, :, :H] = g.numpy()
            hiddens[k, :H] = x.numpy()
            if cells is not None:
                cells[k, :H] = self._c[k].numpy()
        out = torch.addmv(self._head_b, self._head_w, x)
        self._position += 1
        internals: dict[str, np.ndarray] = {GATES: gates, HIDDEN: hiddens}
        if cells is not None:
            internals[CELL] = cells
        logits: torch.Tensor | None = out
        if self.logit_lens and self.head != "classifier":
            from memviz.backends.logit_lens import LENS_LOGITS, recurrent_lens

            internals[LENS_LOGITS] = recurrent_lens(self._head_w, self._head_b, layer_h, out)
        if self.head == "classifier":
            internals[PREDICTION] = classifier_probabilities(out.numpy())
            logits = None
        return StepOutput(logits=logits, memory_key=x.numpy().copy(), internals=internals)

    def _document_chunk(self) -> int:
        return DOCUMENT_CHUNK

    def document_keys(self, token_ids: list[int]) -> Iterator[np.ndarray]:
        """nn.LSTM / nn.GRU over the document in chunks, their own state carried between them (the
        step state is not touched): the top layer's h after each of tokens 0 .. n-2."""
        ids = list(token_ids)[:-1]
        chunk = self._document_chunk()
        state = None
        for s in range(0, len(ids), chunk):
            with torch.inference_mode():  # not around the yield: the consumer's code runs there
                x = torch.tensor([ids[s : s + chunk]], dtype=torch.long)
                out, state = self.model.run(x, state)
                keys = out[0].float().numpy()
            yield from keys


def classifier_probabilities(logits: np.ndarray) -> np.ndarray:
    """Sigmoid for one output, softmax for several (float32 [C])."""
    z = np.asarray(logits, dtype=np.float64)
    if z.size == 1:
        p = 1.0 / (1.0 + math.exp(-float(z[0]))) if z[0] > -700 else 0.0
        return np.array([p], dtype=np.float32)
    z = np.exp(z - z.max())
    return (z / z.sum()).astype(np.float32)
