"""The two bundled models: present, loadable by name offline, of the promised size and quality."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memviz.backends.registry import DEFAULT_MODEL, bundled_models, load_backend
from memviz.cli import main

SAMPLES = Path(__file__).resolve().parent.parent / "resources" / "samples"
EXPECTED = {"python-docs-lstm": "lstm", "python-docs-gpt2": "gpt2"}


@pytest.fixture(scope="module")
def models():
    return {m.name: m for m in bundled_models()}


def test_both_are_bundled_and_listed(models, capsys):
    assert {name: m.architecture for name, m in models.items() if name in EXPECTED} == EXPECTED
    assert DEFAULT_MODEL in models
    assert main(["models"]) == 0
    listed = capsys.readouterr().out.splitlines()
    for name, arch in EXPECTED.items():
        assert any(line.split()[:2] == [name, arch] for line in listed), listed


@pytest.mark.parametrize("name", EXPECTED)
def test_sizes_card_and_safetensors_only(models, name):
    folder = models[name].path
    weights = folder / "model.safetensors"
    assert weights.stat().st_size < 40 * 2**20
    assert not any(folder.glob("*.bin")) and not any(folder.glob("*.pt"))
    card = (folder / "README.md").read_text()
    for needed in ("bits per character", "python3.11-doc", "memviz train", "parameters"):
        assert needed in card, needed
    config = json.loads((folder / "config.json").read_text())
    if name.endswith("lstm"):
        assert config["num_layers"] >= 2 and config["hidden_size"] >= 256
    else:
        assert config["n_layer"] >= 4 and config["n_head"] >= 4 and config["n_embd"] >= 256


@pytest.mark.parametrize("name", EXPECTED)
def test_reads_python_docs_it_never_saw(name):
    """A held-out passage: both models predict it far better than chance (the cards give the full number)."""
    from memviz.train.evaluate import bits_per_char

    backend = load_backend(name)
    text = (SAMPLES / "asyncio_threads.txt").read_text()
    assert bits_per_char(backend, text) < 2.5


def test_gpt2_copies_from_its_context():
    """Induction: on a random token sequence repeated, the repeat costs far less than the first copy
    (the working-memory demonstration; a model without induction heads pays about the same twice)."""
    from memviz.train.evaluate import induction_losses

    first, second = induction_losses(load_backend("python-docs-gpt2"), trials=8)
    assert first > 5.0  # random tokens: nothing to predict them by on first sight
    assert second < 0.5 * first
