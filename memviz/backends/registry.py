"""Resolve `--model`: a bundled model's name, a local folder, or a Hugging Face id."""

from __future__ import annotations

from pathlib import Path

from memviz.backends.base import Backend
from memviz.backends.bundled import (  # noqa: F401 (re-exported: the registry is where callers look)
    BUNDLED_DIRS,
    DEFAULT_MODEL,
    BundledModel,
    _architecture,
    bundled_models,
    bundled_names,
)
from memviz.errors import CheckpointError, MemvizError


def load_backend(spec: str) -> Backend:
    """Load a backend from a bundled name, a folder path or a Hugging Face id."""
    from memviz.backends.gpt2 import GPT2Backend

    spec = spec.strip()
    if not spec:
        raise MemvizError("empty --model")
    for model in bundled_models():
        if model.name == spec:
            return _load_folder(model.path, model.name)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(
                f"{spec}: a model is a folder (config.json + model.safetensors), not a file"
            )
        return _load_folder(path, path.resolve().name)
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec
    if looks_like_path:
        names = ", ".join(bundled_names()) or "none installed"
        raise MemvizError(f"model folder not found: {spec} (bundled models: {names})")
    return GPT2Backend.load(spec, local=False)


def _load_folder(folder: Path, name: str) -> Backend:
    from memviz.backends.gpt2 import GPT2Backend
    from memviz.backends.lstm import LSTMBackend

    arch = _architecture(folder)
    if arch == "lstm":
        return LSTMBackend.from_folder(folder, name=name)
    if arch == "gpt2":
        return GPT2Backend.load(str(folder), local=True, name=name)
    if not (folder / "config.json").exists():
        from memviz.backends.checkpoint import PICKLE_NAMES, refuse_pickle_only

        if any((folder / name).exists() for name in PICKLE_NAMES):
            refuse_pickle_only(folder)  # say why, rather than only that config.json is missing
        raise CheckpointError(f"{folder}: missing config.json (not a model folder)")
    # Let the loaders produce the precise complaint (broken JSON, wrong model_type).
    from memviz.backends.checkpoint import read_json

    config = read_json(folder / "config.json", "model configuration")
    raise CheckpointError(
        f"{folder}: unsupported model_type {config.get('model_type')!r} (memviz reads 'memviz-lstm' and 'gpt2')"
    )
