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


def load_backend(
    spec: str, device: str | None = None, dtype: str | None = None, vocab: str | None = None
) -> Backend:
    """Load a backend from a bundled name, a folder path or a Hugging Face id.

    device: auto|cpu|cuda|mps, dtype: float32|bfloat16|float16 (None: backends.placement's preferred).
    A `.keras` / `.h5` file is a Keras recurrent model; `vocab` is its --vocab FILE, if any.
    """
    from memviz.backends.gpt2 import GPT2Backend

    spec = spec.strip()
    if not spec:
        raise MemvizError("empty --model")
    for model in bundled_models():
        if model.name == spec:
            return _load_folder(model.path, model.name, device, dtype)
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file() and path.suffix.lower() in (".keras", ".h5", ".hdf5"):
            from memviz.backends.keras_import import load_keras_backend

            return load_keras_backend(path, vocab=vocab)
        if not path.is_dir():
            raise CheckpointError(
                f"{spec}: a model is a folder (config.json + model.safetensors), not a file"
            )
        return _load_folder(path, path.resolve().name, device, dtype)
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec
    if looks_like_path:
        names = ", ".join(bundled_names()) or "none installed"
        raise MemvizError(f"model folder not found: {spec} (bundled models: {names})")
    return GPT2Backend.load(spec, local=False, device=device, dtype=dtype)  # any transformers family


def _load_folder(folder: Path, name: str, device: str | None = None, dtype: str | None = None) -> Backend:
    from memviz.backends.families import TRANSFORMER, family_of_model_type
    from memviz.backends.gpt2 import GPT2Backend
    from memviz.backends.lstm import LSTMBackend

    arch = _architecture(folder)
    if arch in ("lstm", "gru"):  # memviz-lstm and memviz-rnn folders
        return LSTMBackend.from_folder(folder, name=name)
    family = family_of_model_type(_model_type(folder))
    if family is not None and family.kind == TRANSFORMER:
        return GPT2Backend.load(str(folder), local=True, name=name, device=device, dtype=dtype)
    if not (folder / "config.json").exists():
        from memviz.backends.checkpoint import PICKLE_NAMES, refuse_pickle_only

        if any((folder / name).exists() for name in PICKLE_NAMES):
            refuse_pickle_only(folder)  # say why, rather than only that config.json is missing
        raise CheckpointError(f"{folder}: missing config.json (not a model folder)")
    # Let the loaders produce the precise complaint (broken JSON, wrong model_type).
    from memviz.backends.checkpoint import read_json
    from memviz.backends.families import supported_model_types

    config = read_json(folder / "config.json", "model configuration")
    raise CheckpointError(
        f"{folder}: unsupported model_type {config.get('model_type')!r}; memviz reads {supported_model_types()}"
    )


def _model_type(folder: Path) -> object:
    import json

    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
