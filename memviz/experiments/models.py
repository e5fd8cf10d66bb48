"""What results.json says about each model an experiment ran."""

from __future__ import annotations

from memviz.errors import MemvizError


def model_entry(backend, name: str | None = None) -> dict:
    """{"name", "fingerprint", "kind", ...}: enough to tell which weights made a curve."""
    info = backend.info
    return {
        "name": name or info.name,
        "fingerprint": backend.fingerprint(),
        "kind": info.kind,
        "architecture": info.architecture,
        "source": info.source,
        "num_layers": info.num_layers,
        "num_heads": info.num_heads,
        "vocab_size": info.vocab_size,
        "context_size": info.context_size,
    }


def unique_names(backends: list) -> list[str]:
    """Each model's name on the plot and in the CSV; two models of one name are told apart."""
    names = [b.info.name for b in backends]
    if len(set(names)) == len(names):
        return names
    return [f"{name} ({i + 1})" if names.count(name) > 1 else name for i, name in enumerate(names)]


def require_lm(backend) -> None:
    if getattr(backend, "head", "lm") != "lm":
        raise MemvizError(
            f"{backend.info.name}: a classifier predicts labels, not text: no losses to measure"
        )
