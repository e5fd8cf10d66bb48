"""`memviz train --init-from FOLDER`: start a run from another model's weights and vocabulary.

The model's files are copied into the run's folder, which the trainers then read as a model to
continue (fresh optimizer and schedule, the vocabulary kept: text outside it is read as the
unknown token, or as bytes for a byte-level BPE). A folder that already holds a model is left as it
is, so the same command run again resumes that run instead of starting it over.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from memviz.errors import MemvizError

RECORD = "init_from.json"
MODEL_TYPES = {"lstm": "memviz-lstm", "rnn": "memviz-rnn", "gpt2": "gpt2"}
# What a run writes about itself: never carried into another run.
_RUN_FILES = {
    "README.md",
    "train_state.pt",
    "train_state.pt.tmp",
    "train_state.json",
    "training.json",
    RECORD,
}


def _resolve(folder: str) -> Path:
    path = Path(folder)
    if (path / "config.json").is_file():
        return path
    from memviz.backends.bundled import bundled_models

    for model in bundled_models():  # a bundled model by name
        if model.name == folder:
            return model.path
    raise MemvizError(f"--init-from {folder}: not a model folder (no config.json)")


def init_from(folder: str, out: Path, architecture: str) -> dict:
    """Copy `folder`'s model into `out` unless `out` holds one; what the run started from."""
    if (out / "config.json").is_file():
        record = out / RECORD
        if record.is_file():
            return json.loads(record.read_text())
        print(f"{out} holds a model already: continuing it, --init-from {folder} not used", file=sys.stderr)
        return {"from": str(out), "note": "--out held a model already"}
    source = _resolve(folder)
    try:
        model_type = json.loads((source / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as exc:
        raise MemvizError(f"--init-from {folder}: unreadable config.json ({exc})") from None
    if model_type != MODEL_TYPES[architecture]:
        raise MemvizError(
            f"--init-from {folder}: a {model_type} model, not what `memviz train {architecture}` "
            f"trains ({MODEL_TYPES[architecture]})"
        )
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name not in _RUN_FILES:
            shutil.copy2(path, out / path.name)
            copied.append(path.name)
    record = {"from": str(source.resolve()), "files": copied}
    (out / RECORD).write_text(json.dumps(record, indent=2))
    print(f"starting from {source}'s weights and vocabulary ({', '.join(copied)})", file=sys.stderr)
    return record
