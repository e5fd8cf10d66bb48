"""One layer's state after every token of a text, computed in batched passes (pattern search).

Recurrent: the layer's hidden state h, from nn.LSTM / nn.GRU modules built from the backend's own
weights for layers 0..L, run over the whole text (in chunks, their state carried between).
Transformers: the residual stream after block L, from one forward pass per context window with
`output_hidden_states` (its element L + 1 is block L's output). The last block is the exception:
transformers hands over its output after the final norm, so the raw residual is read as the final
norm's input (a pre-hook on the family's norm, backends.logit_lens.FINAL_NORM).

Neither touches the step state (position, cache, recurrent state) nor carries out interventions, as
`document_keys`; both leave no hook on the model. Checked against stepping: the full pass equals
the KV-cache steps to 7e-7 on the tests' GPT-2, nn.LSTM equals the stepped cell to 1e-5.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from memviz.backends.logit_lens import DEFAULT_NORM, FINAL_NORM

CHUNK = 2048  # tokens per recurrent call (memory: chunk x hidden floats per layer)


def layer_states(backend, token_ids: Sequence[int], layer: int) -> np.ndarray:
    """float32 [n, D]: `layer`'s state after each of the n tokens (D: that layer's width)."""
    pieces = list(layer_state_pieces(backend, token_ids, layer))
    return np.concatenate(pieces) if pieces else np.zeros((0, _width(backend, layer)), dtype=np.float32)


def layer_state_pieces(backend, token_ids: Sequence[int], layer: int) -> Iterator[np.ndarray]:
    """The same states in consecutive pieces ([m, D] each, in order), so that a long document is
    never held whole: a recurrent chunk or a transformer window at a time."""
    ids = [int(i) for i in token_ids]
    if not 0 <= layer < backend.info.num_layers:
        raise ValueError(f"layer {layer} is not in this model ({backend.info.num_layers} layers)")
    if not ids:
        return iter(())
    if backend.info.kind == "transformer":
        return _transformer_states(backend, ids, layer)
    return _recurrent_states(backend, ids, layer)


def _width(backend, layer: int) -> int:
    sizes = getattr(backend, "layer_sizes", None)
    return int(sizes[layer]) if sizes else int(backend.info.hidden_size)


# -- recurrent ---------------------------------------------------------------------------------------
def _layer_module(model: nn.Module, k: int, cell: str) -> nn.Module:
    """Layer k as a one-layer nn.LSTM / nn.GRU holding the model's weights for it."""
    w_ih, w_hh, b_ih, b_hh = (t.detach() for t in model.layer_params(k))
    hidden = w_hh.shape[1]
    module = (nn.LSTM if cell == "lstm" else nn.GRU)(w_ih.shape[1], hidden, batch_first=True)
    with torch.no_grad():
        for name, value in zip(
            ("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (w_ih, w_hh, b_ih, b_hh), strict=True
        ):
            getattr(module, f"{name}_l0").copy_(value)
    return module.to(w_ih.device).eval()


def _recurrent_states(backend, ids: list[int], layer: int) -> Iterator[np.ndarray]:
    model = backend.model
    layers = [_layer_module(model, k, backend.cell) for k in range(layer + 1)]
    state: list = [None] * len(layers)
    device = model.embedding.weight.device
    for s in range(0, len(ids), CHUNK):
        with torch.inference_mode():  # not around the yield: the consumer's code runs there
            x = model.embedding(torch.tensor([ids[s : s + CHUNK]], dtype=torch.long, device=device))
            for k, module in enumerate(layers):
                x, state[k] = module(x, state[k])
            piece = x[0].to("cpu", torch.float32).numpy()
        yield piece


# -- transformers ------------------------------------------------------------------------------------
def _transformer_states(backend, ids: list[int], layer: int) -> Iterator[np.ndarray]:
    from memviz.backends.transformers_lm import document_windows

    model = backend.model
    last = layer == backend.info.num_layers - 1
    norm = model.get_submodule(FINAL_NORM.get(backend.family.name, DEFAULT_NORM)) if last else None
    for start, first_new, length in document_windows(len(ids), backend.info.context_size):
        window = torch.tensor([ids[start : start + length]], device=model.device)
        captured: list[torch.Tensor] = []
        # the hook lives for this pass only: no other pass (the session's step) can add to it
        keep = captured.append
        handle = norm.register_forward_pre_hook(lambda _m, args, keep=keep: keep(args[0])) if last else None
        try:
            with torch.inference_mode():
                out = model.base_model(input_ids=window, output_hidden_states=not last, use_cache=False)
                states = captured[-1] if last else out.hidden_states[layer + 1]
                piece = states.reshape(length, -1)[first_new - start :].to("cpu", torch.float32).numpy()
        finally:
            if handle is not None:
                handle.remove()
        yield piece
