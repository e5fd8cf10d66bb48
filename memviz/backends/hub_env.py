"""Whether the Hugging Face hub is switched off, read as huggingface_hub itself reads it.

huggingface_hub (and so transformers) is offline when HF_HUB_OFFLINE, or else TRANSFORMERS_OFFLINE,
is one of 1, ON, YES, TRUE in any case. memviz asks at call time (not at import, as
`huggingface_hub.constants.HF_HUB_OFFLINE` does), so a change to the environment is seen.
"""

from __future__ import annotations

import os

try:  # the hub's own parser, so memviz agrees with it whatever values it accepts
    from huggingface_hub.constants import _is_true
except ImportError:  # an older or newer hub without it: its documented values
    _TRUE = {"1", "ON", "YES", "TRUE"}

    def _is_true(value: str | None) -> bool:
        return value is not None and value.upper() in _TRUE


def hub_offline() -> bool:
    """True when huggingface_hub will not reach the network."""
    return bool(_is_true(os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")))
