"""The recurrent family: LSTM and GRU models, stepped gate by gate with their exact equations.

`nn.LSTM` and `nn.GRU` do not expose their gates, so `RecurrentBackend.step` runs the same cells by
hand with the same weights, in PyTorch's conventions:

- LSTM, gates (i, f, g, o): z = W_ih x + b_ih + W_hh h + b_hh, split in four; i, f, o = sigmoid,
  g = tanh; c = f*c + i*g; h = o*tanh(c).
- GRU, gates (r, z, n): r, z = sigmoid(W_i· x + b_i· + W_h· h + b_h·); n = tanh(W_in x + b_in +
  r*(W_hn h + b_hn)); h = (1 - z)*n + z*h.

Layers may differ in size. A step's internals are [L, G, H] / [L, H] with H the widest layer; a
narrower layer's units beyond its size are padding (0), and the manifest's `layer_sizes` says how many
are real. A classifier head (labels in config.json) answers, after every token, what the model would
say if the text ended there: sigmoid for one label, softmax for several (`prediction`, [C]).

The folder format `memviz-rnn` (DESIGN.md, "The recurrent checkpoint format") extends `memviz-lstm`;
both load here. Every size in config.json is checked against the safetensors header before anything
is allocated, and the weights must be finite float32.

The parts live in their own modules, all re-exported here: recurrent_config (RNNConfig and the
format's constants), recurrent_models (the nn.Modules, from_modules), recurrent_checkpoint (check,
load and save a folder), recurrent_backend (RecurrentBackend, the stepping, document_keys).
"""

from __future__ import annotations

from memviz.backends.recurrent_backend import DOCUMENT_CHUNK, RecurrentBackend, classifier_probabilities
from memviz.backends.recurrent_checkpoint import (
    check_weight_headers,
    config_of,
    file_state_of,
    load_checked_weights,
    load_recurrent,
    save_recurrent,
)
from memviz.backends.recurrent_config import (
    CELLS,
    HEADS,
    LSTM_MODEL_TYPE,
    MAX_LAYERS,
    MAX_SIZE,
    MODEL_TYPE,
    MODEL_TYPES,
    RNNConfig,
    _whole,
)
from memviz.backends.recurrent_models import LSTMLanguageModel, RecurrentModel, from_modules

__all__ = [
    "CELLS",
    "DOCUMENT_CHUNK",
    "HEADS",
    "LSTM_MODEL_TYPE",
    "MAX_LAYERS",
    "MAX_SIZE",
    "MODEL_TYPE",
    "MODEL_TYPES",
    "LSTMLanguageModel",
    "RNNConfig",
    "RecurrentBackend",
    "RecurrentModel",
    "_whole",
    "check_weight_headers",
    "classifier_probabilities",
    "config_of",
    "file_state_of",
    "from_modules",
    "load_checked_weights",
    "load_recurrent",
    "save_recurrent",
]
