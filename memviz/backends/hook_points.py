"""Stable names for a model's internals, in the manner of TransformerLens hook points.

The one place where these names live: backends declare which points they have and which one is their
kNN-LM memory key; everything outside backends/ says a point's name, never a module path inside a model.

A hook point is a template with a `{layer}` field (`rnn.{layer}.gates`); `hook_name` fills it in
(`rnn.0.gates`). A step's `StepOutput.internals` holds each kind of point for every layer at once,
under the short keys below (these keys are also the Trace's column names, so they never change).
"""

from __future__ import annotations

import re

# -- hook points (templates) ---------------------------------------------------------------------------
ATTN_PATTERN = "blocks.{layer}.attn.pattern"  # transformer: attention weights, row = query position
LN2_OUT = "blocks.{layer}.ln2.out"  # transformer: the FFN's input, after the block's second layer norm
RNN_GATES = "rnn.{layer}.gates"  # LSTM: i, f, g, o; GRU: r, z, n (PyTorch's orders)
RNN_CELL = "rnn.{layer}.cell"  # LSTM: cell state c (a GRU has none)
RNN_HIDDEN = "rnn.{layer}.hidden"  # LSTM and GRU: hidden state h (the layer's output)
ATTN_Q = "blocks.{layer}.attn.q"  # transformer: the step's query per query head, after rotary (format 2)
ATTN_K = "blocks.{layer}.attn.k"  # transformer: the step's new key per key/value head, after rotary
ATTN_DISTANCE = "blocks.{layer}.attn.distance"  # transformer: each head's expected distance back

# -- StepOutput.internals keys (each [L, ...]: one entry per layer) ------------------------------------
GATES = "gates"  # [L, G, H]: G = 4 (LSTM) or 3 (GRU); H = the widest layer, narrower ones padded with 0
CELL = "cell"  # [L, H]
HIDDEN = "hidden"  # [L, H]
PREDICTION = "prediction"  # [C]: a classifier's label probabilities if the text ended here (not per layer)
ATTENTION_ROW = "attention_row"  # [L, A, t+1]: the current query's row of every layer's pattern
ATTENTION_Q = "attention_q"  # [L, A, d]: this step's query, every layer and head (trace format 2)
ATTENTION_K = "attention_k"  # [L, A_kv, d]: this step's new key, every layer and key/value head
ATTENTION_DISTANCE = "attention_distance"  # [L, A]: each head's expected distance back, t - key

# The recurrent family's internals, kept by the Trace as columns of the same names.
RECURRENT_INTERNALS = (GATES, CELL, HIDDEN, PREDICTION)
LSTM_INTERNALS = RECURRENT_INTERNALS  # the old name

LSTM_GATE_NAMES = ("i", "f", "g", "o")
GRU_GATE_NAMES = ("r", "z", "n")

# Which internals key holds which hook point (a point at layer l is row l of that key's array).
INTERNAL_OF = {
    RNN_GATES: GATES,
    RNN_CELL: CELL,
    RNN_HIDDEN: HIDDEN,
    ATTN_PATTERN: ATTENTION_ROW,
    ATTN_Q: ATTENTION_Q,
    ATTN_K: ATTENTION_K,
    ATTN_DISTANCE: ATTENTION_DISTANCE,
}

_NAME = re.compile(r"^(?P<head>[a-z0-9_]+)\.(?P<layer>\d+)\.(?P<tail>[a-z0-9_.]+)$")


def hook_name(template: str, layer: int) -> str:
    """`hook_name(RNN_GATES, 0)` -> "rnn.0.gates"."""
    return template.format(layer=int(layer))


def parse_hook_name(name: str) -> tuple[str, int]:
    """ "rnn.0.gates" -> (RNN_GATES, 0); ValueError for a name that is no hook point."""
    match = _NAME.match(name)
    if match:
        template = f"{match['head']}.{{layer}}.{match['tail']}"
        if template in _TEMPLATES:
            return template, int(match["layer"])
    raise ValueError(f"not a hook point: {name!r} (known: {', '.join(sorted(_TEMPLATES))})")


def per_layer(templates: tuple[str, ...], num_layers: int) -> tuple[str, ...]:
    """Every template at every layer, layer by layer."""
    return tuple(hook_name(t, layer) for layer in range(num_layers) for t in templates)


_TEMPLATES = frozenset(
    (ATTN_PATTERN, LN2_OUT, RNN_GATES, RNN_CELL, RNN_HIDDEN, ATTN_Q, ATTN_K, ATTN_DISTANCE)
)
