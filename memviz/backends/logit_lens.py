"""The logit lens: the model's own final norm and unembedding applied to the residual stream after
every block (nostalgebraist 2020), so each layer's "current guess" at the next token can be read.

A backend that has a lens sets `logit_lens = True` on request and then puts, in each step's
internals, LENS_LOGITS: a float32 array [L, V], row l the lens logits after block l. The last row
is the model's own output logits (not recomputed), so the last layer equals the model exactly.
A row that cannot be computed (a recurrent layer narrower than the head) is NaN.

Transformers: `output_hidden_states` holds the embeddings and then each block's output; in
transformers 5 its last element is already after the final norm (the base model's last hidden
state), so the lens takes blocks 0 .. L-2 from it and the model's logits for block L-1. The final
norm is the family's (FINAL_NORM below), then OPT's `project_out` where the model has one, then the
output embeddings, then Gemma's final soft-capping where the config asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

LENS_LOGITS = "lens_logits"  # the internals key a backend fills when its lens is on
LENS_CANDIDATES = 10  # top-k kept per layer and step

# module path of the final norm, relative to the CausalLM model; families not named: "model.norm"
FINAL_NORM = {
    "gpt2": "transformer.ln_f",
    "gpt_neo": "transformer.ln_f",
    "gpt_neox": "gpt_neox.final_layer_norm",
    "opt": "model.decoder.final_layer_norm",
}
DEFAULT_NORM = "model.norm"


def transformer_head(model, family_name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """hidden [..., D] -> logits [..., V]: final norm, (OPT) project_out, unembedding, soft-cap."""
    import torch

    norm = model.get_submodule(FINAL_NORM.get(family_name, DEFAULT_NORM))
    project = None
    if family_name == "opt":
        project = getattr(model.get_submodule("model.decoder"), "project_out", None)
    unembed = model.get_output_embeddings()
    cap = getattr(model.config, "final_logit_softcapping", None)

    def head(hidden: torch.Tensor) -> torch.Tensor:
        x = norm(hidden)
        if project is not None:
            x = project(x)
        logits = unembed(x)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    return head


def transformer_lens(head, hidden_states, logits: torch.Tensor) -> np.ndarray:
    """[L, V] float32 numpy for the last position: blocks 0 .. L-2 through `head`, block L-1
    the model's own `logits` ([V])."""
    import torch

    rows = [head(h[0, -1]).float() for h in hidden_states[1:-1]]
    rows.append(logits.float())
    return torch.stack(rows).to("cpu", torch.float32).numpy()


def recurrent_lens(
    head_w: torch.Tensor, head_b: torch.Tensor, hiddens: list[torch.Tensor], logits: torch.Tensor
) -> np.ndarray:
    """[L, V]: the output head applied to each layer's h where its size fits the head (else NaN);
    the last layer is the model's own `logits`."""
    import torch

    rows = []
    for h in hiddens[:-1]:
        if h.shape[-1] == head_w.shape[1]:
            rows.append(torch.addmv(head_b, head_w, h))
        else:
            rows.append(torch.full_like(logits, float("nan")))
    rows.append(logits)
    return torch.stack(rows).float().numpy()


def lens_distributions(lens_logits: np.ndarray) -> np.ndarray:
    """Softmax of each row in float64 ([L, V]); NaN rows stay NaN."""
    x = np.asarray(lens_logits, dtype=np.float64).copy()
    with np.errstate(invalid="ignore"):
        x -= np.max(x, axis=1, keepdims=True)  # a NaN row stays NaN
    np.exp(x, out=x)
    x /= x.sum(axis=1, keepdims=True)
    return x


def lens_top_k(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per layer the k most probable tokens, best first: ids [L, k] int64, probs [L, k] float32;
    a NaN row (no lens there) gives ids -1 and NaN."""
    L, V = probs.shape
    k = min(k, V)
    ids = np.full((L, k), -1, dtype=np.int64)
    out = np.full((L, k), np.nan, dtype=np.float32)
    for layer, row in enumerate(probs):
        if not np.isfinite(row).all():
            continue
        part = np.argpartition(-row, k - 1)[:k]
        order = np.lexsort((part, -row[part]))  # ties broken by lower id, as sampling.top_k_of
        ids[layer] = part[order]
        out[layer] = row[part[order]]
    return ids, out
