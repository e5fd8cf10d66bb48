"""Interventions on a recurrent model's step (memviz.core.interventions says what each spec means).

- cell:L.U=V / hidden:L.U=V: inside the step, right after layer L computes its new state, unit U of
  c (before h = o*tanh(c)) or of h is set to V; the layers above and the step's output read it.
- reset:S: the state is zeroed before step S.
- context:W: before each step the state is rebuilt from zero over the W - 1 tokens before it (not
  reaching back past a reset), so the step sees the last W tokens as though the text began there.

Specs are read by their fields (kind, layer, unit, value, step, width): core sits above backends.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class RecurrentInterventions:
    def __init__(self, specs: Sequence = ()) -> None:
        # (kind, layer) -> [(unit, value)], applied in the order given
        self.clamps: dict[tuple[str, int], list[tuple[int, float]]] = {}
        for s in specs:
            if s.kind in ("cell", "hidden"):
                self.clamps.setdefault((s.kind, s.layer), []).append((s.unit, float(s.value)))
        self.resets = frozenset(s.step for s in specs if s.kind == "reset")
        windows = [s.width for s in specs if s.kind == "context"]
        self.window: int | None = windows[0] if windows else None

    def clamp(self, kind: str, layer: int, state: torch.Tensor) -> torch.Tensor:
        """The state with this layer's clamps of `kind` applied (the same tensor if none)."""
        units = self.clamps.get((kind, layer))
        if not units:
            return state
        state = state.clone()
        for unit, value in units:
            state[unit] = value
        return state

    def window_start(self, t: int, last_reset: int) -> int:
        """The first token step t's state is rebuilt from under context:W."""
        assert self.window is not None
        return max(last_reset, t + 1 - self.window)
