"""GPT-2: one family of the transformers backend (memviz.backends.transformers_lm).

Kept as a module so that `from memviz.backends.gpt2 import GPT2Backend` goes on working: GPT2Backend
is the transformers backend, whatever the family it loaded.
"""

from __future__ import annotations

from memviz.backends.transformers_lm import ContextFullError, TransformerBackend, document_windows
from memviz.backends.transformers_load import quiet_transformers as _quiet_transformers

GPT2Backend = TransformerBackend

__all__ = ["ContextFullError", "GPT2Backend", "TransformerBackend", "_quiet_transformers", "document_windows"]
