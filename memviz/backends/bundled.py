"""The models that ship with memviz: where they are installed and what each one is."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
# Installed wheel: the models are copied into the package. Source checkout: the top-level models/.
BUNDLED_DIRS = (PACKAGE_DIR / "bundled_models", PACKAGE_DIR.parent / "models")
DEFAULT_MODEL = "python-docs-gpt2"


@dataclass(frozen=True)
class BundledModel:
    name: str
    architecture: str
    path: Path


def _architecture(folder: Path) -> str | None:
    try:
        config = json.loads((folder / "config.json").read_text())
        model_type = config.get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    if model_type == "memviz-rnn":  # the recurrent family: the architecture is its cell
        cell = config.get("cell", "lstm")
        return cell if cell in ("gru",) else "lstm"  # an unknown cell: the recurrent loader says why
    return {"memviz-lstm": "lstm", "gpt2": "gpt2"}.get(model_type)


def bundled_models() -> list[BundledModel]:
    found: dict[str, BundledModel] = {}
    for root in BUNDLED_DIRS:
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            arch = _architecture(folder) if folder.is_dir() else None
            if arch and folder.name not in found:
                found[folder.name] = BundledModel(folder.name, arch, folder)
    return list(found.values())


def bundled_names() -> list[str]:
    return [m.name for m in bundled_models()]
