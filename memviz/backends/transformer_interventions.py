"""Interventions on a transformers model, for one step's forward pass (memviz.core.interventions
says what each spec means; this module is how a transformer carries it out).

- head:L.H=zero: a forward pre-hook on layer L's attention output projection zeroes head H's slice
  of its input (the heads' attention-weighted values, concatenated head by head), for the step's
  pass only: no hook stays on the model, so `document_keys` reads the model as it is.
- mask:A-B: the step passes an attention mask over the whole context with zeros at A..B, and its own
  position id, so no position shifts (OPT, for one, counts positions from the mask otherwise).
- context:W: no KV cache; each step is a full forward pass of the last W tokens with positions from
  0, as though the text began there. The last query's row is the step's attention row.

Specs are read by their fields (kind, layer, head, start, end, width): core sits above backends.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import torch

# Each family's attention output projection, "{layer}" = the layer's index; checked against
# transformers 5.24's modelling code (the module whose input is the heads' outputs, head by head).
_O_PROJ = "model.layers.{layer}.self_attn.o_proj"
OUTPUT_PROJECTION: dict[str, str] = {
    "gpt2": "transformer.h.{layer}.attn.c_proj",
    "gpt_neo": "transformer.h.{layer}.attn.attention.out_proj",
    "gpt_neox": "gpt_neox.layers.{layer}.attention.dense",
    "opt": "model.decoder.layers.{layer}.self_attn.out_proj",
    "llama": _O_PROJ,
    "smollm3": _O_PROJ,
    "mistral": _O_PROJ,
    "qwen2": _O_PROJ,
    "qwen3": _O_PROJ,
    "phi3": _O_PROJ,
    "gemma2": _O_PROJ,
    "gemma3": _O_PROJ,
}


def output_projection(model: torch.nn.Module, family: str, layer: int) -> torch.nn.Module:
    from memviz.errors import MemvizError

    path = OUTPUT_PROJECTION.get(family)
    if path is None:
        raise MemvizError(f"head ablation: memviz does not know where {family}'s heads are projected")
    try:
        return model.get_submodule(path.format(layer=layer))
    except AttributeError:
        raise MemvizError(f"head ablation: this {family} model has no {path.format(layer=layer)}") from None


class TransformerInterventions:
    """What a TransformerBackend's step does differently under a set of specs."""

    def __init__(self, model: torch.nn.Module, family: str, num_heads: int, specs: Sequence) -> None:
        self.model = model
        self.num_heads = num_heads
        heads: dict[int, list[int]] = {}
        for s in specs:
            if s.kind == "head":
                heads.setdefault(s.layer, []).append(s.head)
        # resolved now, so a model without the module is refused before the run starts
        self.ablations = [(output_projection(model, family, layer), hs) for layer, hs in heads.items()]
        self.masks = [(s.start, s.end) for s in specs if s.kind == "mask"]
        windows = [s.width for s in specs if s.kind == "context"]
        self.window: int | None = windows[0] if windows else None

    @property
    def uses_cache(self) -> bool:
        return self.window is None

    def forward_inputs(self, ids: list[int], cache) -> dict:
        """The step's forward arguments: ids are every token read so far, the current one last."""
        device = self.model.device
        if self.window is not None:
            window = ids[-self.window :]
            return {
                "input_ids": torch.tensor([window], device=device),
                "position_ids": torch.arange(len(window), device=device).unsqueeze(0),
                "use_cache": False,
            }
        t = len(ids) - 1
        inputs = {"input_ids": torch.tensor([ids[-1:]], device=device), "cache": cache, "use_cache": True}
        if self.masks:
            keep = torch.ones(1, t + 1, dtype=torch.long, device=device)
            for start, end in self.masks:
                keep[0, start : end + 1] = 0
            inputs["attention_mask"] = keep
            inputs["position_ids"] = torch.tensor([[t]], device=device)
        return inputs

    @contextmanager
    def ablating(self) -> Iterator[None]:
        """Zero the ablated heads' slices of the output projections' inputs during the pass inside."""
        with ExitStack() as stack:
            for module, heads in self.ablations:
                handle = module.register_forward_pre_hook(self._zero_heads(heads))
                stack.callback(handle.remove)
            yield

    def _zero_heads(self, heads: list[int]):
        def hook(_module, args):
            x = args[0].clone()
            size = x.shape[-1] // self.num_heads  # the head dim (Gemma's need not be hidden / heads)
            for h in heads:
                x[..., h * size : (h + 1) * size] = 0
            return (x, *args[1:])

        return hook
