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


# A safetensors header is 8 bytes of length, then that much JSON; a real one is kilobytes to a few MB.
MAX_HEADER_BYTES = 100 * 2**20


def safetensors_files(folder: Path) -> list[Path]:
    """The weights files of a Hugging Face folder: model.safetensors, or the shards its index names."""
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index, "weights index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: no weight_map")
        names = sorted({str(v) for v in weight_map.values()})
        for name in names:
            if Path(name).name != name:
                raise CheckpointError(f"{index}: shard {name!r} is not a file in the folder")
        return [folder / name for name in names]
    refuse_pickle_only(folder)  # says why: only a pickle, or nothing
    raise CheckpointError(f"{folder}: missing model.safetensors")


def read_safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape) of every tensor in a safetensors file, read from its header alone."""
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: not a safetensors file (too short)")
            (length,) = struct.unpack("<Q", head)
            if length > MAX_HEADER_BYTES:
                raise CheckpointError(f"{path}: not a safetensors file (header of {length} bytes)")
            header = json.loads(f.read(length).decode("utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: corrupt safetensors header") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header")
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            tensors[name] = (str(entry["dtype"]), tuple(int(n) for n in entry["shape"]))
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{path}: corrupt safetensors header (tensor {name!r})") from None
    return tensors


def read_weights_headers(folder: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor's dtype and shape across a folder's safetensors files, without loading any."""
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    for path in safetensors_files(folder):
        if not path.is_file():
            raise CheckpointError(f"{folder}: missing weights shard {path.name}")
        tensors.update(read_safetensors_header(path))
    return tensors
