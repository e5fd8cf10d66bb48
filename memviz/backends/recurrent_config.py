"""The recurrent checkpoint's config.json: RNNConfig, read with every size checked, and the tensor
shapes it promises (DESIGN.md, "The recurrent checkpoint format")."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from memviz.backends.hook_points import GRU_GATE_NAMES, LSTM_GATE_NAMES
from memviz.backends.tokenizers import TOKENIZER_KINDS
from memviz.errors import CheckpointError

MODEL_TYPE = "memviz-rnn"
LSTM_MODEL_TYPE = "memviz-lstm"  # the first format: char LSTM language models, equal layer sizes
MODEL_TYPES = (MODEL_TYPE, LSTM_MODEL_TYPE)
CELLS = {"lstm": LSTM_GATE_NAMES, "gru": GRU_GATE_NAMES}
HEADS = ("lm", "classifier")
MAX_SIZE = 1 << 20  # a bound on any one dimension: far above a desktop model, far below an absurd one
MAX_LAYERS = 64


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
