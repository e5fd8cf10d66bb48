"""What a right-click can change where it lands: (label, spec) pairs in memviz.core.interventions'
syntax, offered by a view's `intervention_targets_at(global_pos)` (the app's Intervene adds them to
the menu). A spec ending in "=?" is a clamp whose value the app asks for. Views only name targets:
checking a spec against the model and running it is the app's business.
"""

from __future__ import annotations

from memviz.core.trace import Trace
from memviz.panels.heatmap import show_token
from memviz.panels.recurrent_info import cell_of

Target = tuple[str, str]  # (menu label, spec)


def head_targets(layer: int, head: int) -> list[Target]:
    return [(f"ablate head {layer}.{head}", f"head:{layer}.{head}=zero")]


def unit_targets(trace: Trace | None, layer: int, unit: int, step: int | None = None) -> list[Target]:
    """Clamp a recurrent unit's cell (an LSTM's) or hidden state; with a step, reset before it."""
    kinds = ("hidden",) if cell_of(trace) == "gru" else ("cell", "hidden")
    targets = [(f"clamp {kind} {layer}.{unit} to a value...", f"{kind}:{layer}.{unit}=?") for kind in kinds]
    if step is not None and step >= 1:
        targets.append((f"reset the state before step {step}", f"reset:{step}"))
    return targets


def token_targets(trace: Trace | None, step: int, cursor: int) -> list[Target]:
    """A token of the strip: recurrent models reset before it; transformers mask it, forget from it on
    or what came before it (position 0, the attention sink, is never masked); both can be cut to a
    context window that, at the cursor's step, begins at this token."""
    if trace is None or not 1 <= step < len(trace):
        return []
    token = show_token(trace.token_label(step), 16)
    last = len(trace) - 1
    if trace.kind == "transformer":
        targets = [(f"mask '{token}' (mask:{step}-{step})", f"mask:{step}-{step}")]
        if step < last:
            targets.append((f"forget from '{token}' on (mask:{step}-{last})", f"mask:{step}-{last}"))
        if step >= 2:
            targets.append((f"forget what came before '{token}' (mask:1-{step - 1})", f"mask:1-{step - 1}"))
    else:
        targets = [(f"reset the state before '{token}' (reset:{step})", f"reset:{step}")]
    width = cursor - step + 1
    if step <= cursor and width >= 1:
        targets.append(
            (
                f"only the last {width} tokens (context:{width}: step {cursor} sees from '{token}' on)",
                f"context:{width}",
            )
        )
    return targets
