"""Reading and writing memviz-rnn / memviz-lstm folders: the safetensors header checked against
config.json before anything is allocated, weights finite float32."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from memviz.backends.checkpoint import load_safetensors, read_json, refuse_pickle_only
from memviz.backends.recurrent_config import LSTM_MODEL_TYPE, RNNConfig
from memviz.backends.recurrent_models import LSTMLanguageModel, RecurrentModel
from memviz.backends.tokenizers import Tokenizer, load_tokenizer, save_tokenizer
from memviz.errors import CheckpointError


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
