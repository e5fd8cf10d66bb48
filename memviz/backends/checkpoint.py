"""Safe checkpoint reading: safetensors only; pickles are refused, never opened."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from memviz.errors import CheckpointError

PICKLE_NAMES = ("pytorch_model.bin", "model.pt", "model.pth", "model.bin")


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: missing {path.name} ({what})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: broken JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def refuse_pickle_only(folder: Path) -> None:
    """Say clearly why a folder holding only a pickled checkpoint is not loaded."""
    if (folder / "model.safetensors").exists() or any(folder.glob("model-*.safetensors")):
        return
    pickles = [name for name in PICKLE_NAMES if (folder / name).exists()]
    if pickles:
        raise CheckpointError(
            f"{folder}: holds only a pickled checkpoint ({pickles[0]}); memviz never unpickles files "
            "(they can run code). Convert it to model.safetensors (see the README)."
        )
    raise CheckpointError(f"{folder}: missing model.safetensors")


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    refuse_pickle_only(path.parent)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"{path}: corrupt or unreadable safetensors file ({first_line})") from None
