"""GPT-2 through transformers, stepped one token at a time with the KV cache.

Eager attention is forced: the default SDPA path silently returns no attention weights.
The kNN-LM key is the input to the last block's feed-forward network, after its layer norm
(Khandelwal et al.'s best choice), captured with a forward hook that lives for one forward pass only:
no other pass (a document being read into the memory) can overwrite a step's key, and no hook is
left on the model between calls.
"""

from __future__ import annotations

import os
import socket
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from safetensors import SafetensorError

from memviz.backends.base import Encoding, ModelInfo, StepOutput, weights_fingerprint
from memviz.backends.checkpoint import read_json, refuse_pickle_only
from memviz.backends.dtypes import attention_dtype_for
from memviz.backends.hook_points import ATTENTION_ROW, ATTN_PATTERN, LN2_OUT, hook_name, per_layer
from memviz.errors import CheckpointError, MemvizError


class ContextFullError(MemvizError):
    """The model's context window (its working memory) is full."""


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*past_key_values.*")


def load_gpt2(source: str, local: bool):
    """Load model and tokenizer from a local folder or a Hugging Face id. Safetensors only."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    _quiet_transformers()
    local_only = local
    if local:
        folder = Path(source)
        config = read_json(folder / "config.json", "model configuration")
        if config.get("model_type") != "gpt2":
            raise CheckpointError(f"{folder}: model_type is {config.get('model_type')!r}, expected 'gpt2'")
        refuse_pickle_only(folder)
    elif _cached(source):
        local_only = True  # found in the Hugging Face cache: no network needed
    elif not _hub_reachable():
        raise _explain_load_failure(source, local, OSError("offline"))
    try:
        model = GPT2LMHeadModel.from_pretrained(
            source,
            attn_implementation="eager",
            use_safetensors=True,
            dtype=torch.float32,
            local_files_only=local_only,
        )
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except OSError as exc:
        raise _explain_load_failure(source, local, exc) from None
    except (ValueError, RuntimeError, KeyError, SafetensorError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"{source}: cannot load GPT-2 checkpoint ({first})") from None
    model.eval()
    return model, tokenizer


def _cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
        weights = try_to_load_from_cache(repo_id, "model.safetensors")
    except ValueError:  # not a valid repo id
        return False
    return isinstance(found, str) and isinstance(weights, str)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick look before transformers' own retries (which take half a minute when offline)."""
    from memviz.backends.hub_env import hub_offline

    if hub_offline():  # any value the hub honours (1, true, ON, yes...), not only "1"
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _explain_load_failure(source: str, local: bool, exc: Exception) -> MemvizError:
    text = str(exc)
    first = text.splitlines()[0] if text else exc.__class__.__name__
    if local:
        return CheckpointError(f"{source}: corrupt or incomplete GPT-2 folder ({first})")
    from memviz.backends.hub_env import hub_offline

    offline = hub_offline() or "offline" in text.lower() or "connect" in text.lower()
    from memviz.backends.bundled import bundled_names

    names = ", ".join(bundled_names()) or "none installed"
    if offline or "couldn't" in text.lower() or "resolve" in text.lower():
        return MemvizError(
            f"cannot download '{source}' (offline, and not in the Hugging Face cache); "
            f"bundled models that work offline: {names}"
        )
    return MemvizError(f"cannot load '{source}' from Hugging Face ({first}); bundled models: {names}")


class GPT2Backend:
    """One token per step through the KV cache; records every layer's and head's attention row."""

    def __init__(self, model, tokenizer, name: str, source: str) -> None:
        from transformers import DynamicCache

        self._cache_cls = DynamicCache
        self.model = model.eval()
        if getattr(model.config, "_attn_implementation", "eager") != "eager":
            model.set_attn_implementation("eager")
        self.tokenizer = tokenizer
        cfg = model.config
        self.info = ModelInfo(
            name=name,
            source=source,
            architecture="gpt2",
            num_layers=cfg.n_layer,
            hidden_size=cfg.n_embd,
            num_heads=cfg.n_head,
            vocab_size=cfg.vocab_size,
            context_size=cfg.n_positions,
        )
        self._fingerprint = weights_fingerprint(dict(model.state_dict()), extra=f"gpt2:{cfg.vocab_size}")
        # Rows leave in the dtype the Trace keeps them in: torch converts to float16 in microseconds,
        # numpy takes milliseconds a step on attention's many float16-subnormal weights (issue 7).
        self._attention_half = attention_dtype_for(self.info) == np.float16
        self.memory_key_point = hook_name(LN2_OUT, cfg.n_layer - 1)
        self.memory_key_dim = cfg.n_embd
        self._key_module = model.transformer.h[-1].ln_2  # the module behind memory_key_point
        self._token_cache: dict[int, str] = {}
        self.reset()

    @classmethod
    def load(cls, source: str, local: bool, name: str | None = None) -> GPT2Backend:
        model, tokenizer = load_gpt2(source, local)
        return cls(model, tokenizer, name=name or (Path(source).name if local else source), source=source)

    @contextmanager
    def _capturing_key(self):
        """Yields a list that holds the key module's output once the forward pass inside has run.

        Only this thread's pass is captured: a pass on another thread cannot slip its output in.
        """
        captured: list[torch.Tensor] = []
        thread = threading.get_ident()

        def capture(_module, _inputs, output: torch.Tensor) -> None:
            if threading.get_ident() == thread:
                captured.append(output)

        handle = self._key_module.register_forward_hook(capture)
        try:
            yield captured
        finally:
            handle.remove()

    def encode(self, text: str) -> Encoding:
        return Encoding(ids=list(self.tokenizer.encode(text)))

    def token_text(self, token_id: int) -> str:
        text = self._token_cache.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id])
            self._token_cache[token_id] = text
        return text

    def fingerprint(self) -> str:
        return self._fingerprint

    def hook_points(self) -> tuple[str, ...]:
        return (*per_layer((ATTN_PATTERN,), self.info.num_layers), self.memory_key_point)

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def position(self) -> int:
        return self._position

    def reset(self) -> None:
        self._cache = self._cache_cls(config=self.model.config)
        self._position = 0

    @torch.inference_mode()
    def step(self, token_id: int) -> StepOutput:
        if self._position >= self.info.context_size:
            raise ContextFullError(
                f"context window full: {self.info.name} reads at most {self.info.context_size} tokens"
            )
        ids = torch.tensor([[token_id]])
        with self._capturing_key() as key:
            out = self.model(input_ids=ids, cache=self._cache, use_cache=True, output_attentions=True)
        self._position += 1
        # attentions: per layer [1, A, 1, t+1] -> [L, A, t+1]
        attention = torch.cat([a[0, :, 0, :] for a in out.attentions]).view(
            self.info.num_layers, self.info.num_heads, -1
        )
        if self._attention_half:
            attention = attention.to(torch.float16)
        return StepOutput(
            logits=out.logits[0, -1].float(),
            memory_key=key[-1][0, -1].float().numpy().copy(),
            internals={ATTENTION_ROW: attention.numpy()},
        )

    def document_keys(self, token_ids: list[int]) -> Iterator[np.ndarray]:
        """Keys after tokens 0 .. n-2: whole windows in one forward pass each (no KV cache, so the
        step state is untouched), overlapping as document_windows says; the hook is gone before
        each window's keys are handed out."""
        ids = list(token_ids)[:-1]
        for start, first_new, length in document_windows(len(ids), self.info.context_size):
            with torch.inference_mode(), self._capturing_key() as key:
                # the transformer alone: the key is inside it, and the LM head (V x D per token) is not needed
                self.model.transformer(input_ids=torch.tensor([ids[start : start + length]]), use_cache=False)
            yield from key[-1][0].float().numpy()[first_new - start :]


def document_windows(n: int, window: int | None) -> Iterator[tuple[int, int, int]]:
    """(start, first position to yield, length) of the pieces a document of n tokens is read in.

    No window: one piece. A window of W: pieces of W tokens overlapping by W // 4, so that every
    key past the first piece was computed with at least W // 4 tokens of context.
    """
    if not window:
        yield 0, 0, n
        return
    overlap = window // 4
    start, first_new = 0, 0
    while first_new < n:
        length = min(window, n - start)
        yield start, first_new, length
        first_new = start + length
        start = max(0, first_new - overlap)
