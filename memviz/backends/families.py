"""The model families memviz loads: one registry that every backend adds its rows to.

A family is what a folder's `config.json` says it is (its `model_type`), the kind of memory it has
("transformer": attention over a context window; "recurrent": a state carried from step to step),
and, for transformers, where its kNN-LM key lives. Qt-free and torch-free: `memviz models --families`
reads it without loading a model library.

The key is the input to the last block's feed-forward network, after that network's norm (kNN-LM's
best choice, Khandelwal et al. 2020). Each transformer row names that module with `{last}` for the last
layer's index, checked against transformers 5.24's modelling code, and says whether the key is the
module's output or its input (OPT's `fc1` input is the FFN's input whether the norm comes before it,
`do_layer_norm_before`, or not). Where a loaded model has no module of that name (a variant of the
family), the backend falls back to the final normed hidden state (the base model's last_hidden_state)
and says so in `key_source`.
"""

from __future__ import annotations

from dataclasses import dataclass

TRANSFORMER = "transformer"
RECURRENT = "recurrent"


@dataclass(frozen=True)
class Family:
    name: str  # the family's name: ModelInfo.architecture and the manifest's `architecture`
    kind: str  # TRANSFORMER or RECURRENT
    model_types: tuple[str, ...]  # config.json `model_type` values this family reads
    title: str  # for people: "Llama (Llama 2/3, SmolLM 1/2, TinyLlama)"
    key_module: str | None = None  # transformers: module path of the key, "{last}" = last layer
    key_from: str = "output"  # "output" or "input" of key_module
    notes: str = ""  # what the head grid marks: grouped-query attention, sliding windows, soft-capping


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add (or replace, by name) a family. Backends call this at import of this module's table."""
    FAMILIES[family.name] = family
    return family


def family_of_model_type(model_type: object) -> Family | None:
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    return None


def families(kind: str | None = None) -> list[Family]:
    return [f for f in FAMILIES.values() if kind is None or f.kind == kind]


def supported_model_types() -> str:
    """One line's worth: every model_type memviz reads, by kind."""
    parts = []
    for kind in (TRANSFORMER, RECURRENT):
        types = [t for f in families(kind) for t in f.model_types]
        if types:
            parts.append(f"{kind}s: {', '.join(types)}")
    return "; ".join(parts)


def kind_of(architecture: str, num_heads: int = 0) -> str:
    """The kind of a family by name; for a name no row knows (an old trace), by whether it has heads."""
    family = FAMILIES.get(architecture)
    if family is not None:
        return family.kind
    if architecture in ("lstm", "gru", "rnn", "keras"):
        return RECURRENT
    return TRANSFORMER if num_heads or architecture else ""


_FFN_NORM = "model.layers.{last}.post_attention_layernorm"

for _family in (
    Family(
        "gpt2",
        TRANSFORMER,
        ("gpt2",),
        "GPT-2 (gpt2, distilgpt2, gpt2-medium ...)",
        "transformer.h.{last}.ln_2",
    ),
    Family(
        "gpt_neo",
        TRANSFORMER,
        ("gpt_neo",),
        "GPT-Neo",
        "transformer.h.{last}.ln_2",
        notes="local layers: sliding window",
    ),
    Family(
        "gpt_neox",
        TRANSFORMER,
        ("gpt_neox",),
        "GPT-NeoX (Pythia)",
        "gpt_neox.layers.{last}.post_attention_layernorm",
        notes="rotary",
    ),
    Family("opt", TRANSFORMER, ("opt",), "OPT", "model.decoder.layers.{last}.fc1", key_from="input"),
    Family("llama", TRANSFORMER, ("llama",), "Llama (SmolLM 1/2, TinyLlama)", _FFN_NORM, notes="rotary, GQA"),
    Family("smollm3", TRANSFORMER, ("smollm3",), "SmolLM3", _FFN_NORM, notes="rotary, GQA"),
    Family("mistral", TRANSFORMER, ("mistral",), "Mistral", _FFN_NORM, notes="rotary, GQA, sliding window"),
    Family(
        "qwen2", TRANSFORMER, ("qwen2",), "Qwen2 / Qwen2.5", _FFN_NORM, notes="rotary, GQA, sliding window"
    ),
    Family("qwen3", TRANSFORMER, ("qwen3",), "Qwen3", _FFN_NORM, notes="rotary, GQA, sliding window"),
    Family("phi3", TRANSFORMER, ("phi3",), "Phi-3", _FFN_NORM, notes="rotary, GQA, sliding window"),
    Family(
        "gemma2",
        TRANSFORMER,
        ("gemma2",),
        "Gemma 2",
        "model.layers.{last}.pre_feedforward_layernorm",
        notes="rotary, GQA, sliding window, soft-capping",
    ),
    Family(
        "gemma3",
        TRANSFORMER,
        ("gemma3_text",),
        "Gemma 3 (text: gemma-3-1b and gemma3_text checkpoints)",
        "model.layers.{last}.pre_feedforward_layernorm",
        notes="rotary, GQA, sliding window",
    ),
    Family("lstm", RECURRENT, ("memviz-lstm",), "memviz LSTM (char-level, bundled format)"),
):
    register(_family)
