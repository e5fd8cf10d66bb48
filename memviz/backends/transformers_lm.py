"""Any decoder-only causal LM of `transformers` whose family memviz knows, one token per step.

Eager attention is forced (the default SDPA path silently returns no attention weights) and each
step goes through the KV cache, so a step costs one token, not a re-run. Each step records, for every
layer, the query (per query head) and the new key (per key/value head) after rotary embedding
(`ATTENTION_Q`, `ATTENTION_K`, captured by backends.qk_capture's "memviz_eager" attention function,
which calls the family's own eager attention), and `attention_layout` says how a row is rebuilt
from them (trace format 2). Where a row cannot be rebuilt from q and k (GPT-Neo, whose attention
does not go through transformers' AttentionInterface; a mask: or context: intervention;
`set_attention_storage("dense")`, i.e. `memviz trace --dense-attention`) every layer's and head's
attention row is recorded instead, as before: query heads, as many as the model has, whether or
not they share key/value heads. A sliding-window layer's cache keeps only its window, so its row
is padded with zeros on the left to the full t+1 positions (which is what the full forward pass
gives, the mask having zeroed them there).

The kNN-LM key is the module that backends.families names for the family, captured with a forward
hook that lives for one forward pass only: no other pass (a document being read into the memory)
can overwrite a step's key, and no hook is left on the model between calls.

Loading never runs code from the checkpoint: the model class comes from transformers' own table
for the family's model_type (no Auto class, no `trust_remote_code`), and a config's `auto_map` is
dropped. The config is checked against the weights files' headers before the model is built, so a
config that asks for more than the file holds is refused without allocating it (transformers_check).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

from memviz.backends.base import Encoding, ModelInfo, StepOutput, weights_fingerprint
from memviz.backends.dtypes import attention_dtype_for
from memviz.backends.families import TRANSFORMER, Family, family_of_model_type
from memviz.backends.hook_points import ATTENTION_ROW, ATTN_PATTERN, LN2_OUT, hook_name, per_layer
from memviz.backends.placement import resolve_device, resolve_dtype
from memviz.backends.qk_capture import (
    ATTENTION_DISTANCE,
    ATTENTION_K,
    ATTENTION_Q,
    IMPLEMENTATION,
    QKSink,
    capturing,
)
from memviz.backends.token_bytes import token_bytes as token_bytes_of
from memviz.errors import MemvizError


class ContextFullError(MemvizError):
    """The model's context window (its working memory) is full."""


def layer_windows(config, family: Family) -> tuple[int | None, ...]:
    """Each layer's sliding window (None: the layer attends to the whole context), as the family's
    modelling code decides it."""
    layers = int(config.num_hidden_layers)
    if family.name == "gpt_neo":  # attention_layers: "global" or "local" (window_size keys)
        return tuple(config.window_size if kind == "local" else None for kind in config.attention_layers)
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if types:
        return tuple(window if kind == "sliding_attention" else None for kind in types[:layers])
    if family.name in ("mistral", "phi3") and window:
        return (int(window),) * layers  # every layer slides (their masks read config.sliding_window)
    return (None,) * layers


def _module(model: torch.nn.Module, path: str) -> torch.nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def run_start_ids(tokenizer) -> tuple[int, ...]:
    """The special tokens the tokenizer puts in front of a text (Llama's and Gemma's BOS, OPT's
    </s>): the models were trained with them, and Gemma reads nonsense without. () for GPT-2."""
    probe = "memviz"
    plain = list(tokenizer.encode(probe, add_special_tokens=False))
    full = list(tokenizer.encode(probe, add_special_tokens=True))
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return tuple(int(i) for i in full[:start])
    return ()


class TransformerBackend:
    """One token per step through the KV cache; records every layer's queries and keys (or, dense,
    every layer's and head's attention row)."""

    def __init__(self, model, tokenizer, name: str, source: str, family: Family | None = None) -> None:
        from transformers import DynamicCache

        from memviz.backends import qk_capture

        self._cache_cls = DynamicCache
        self.model = model.eval()
        qk_capture.register()
        if getattr(model.config, "_attn_implementation", "eager") not in ("eager", IMPLEMENTATION):
            model.set_attn_implementation("eager")
        self.tokenizer = tokenizer
        cfg = model.config
        self.family = family or family_of_model_type(cfg.model_type)
        if self.family is None or self.family.kind != TRANSFORMER:
            raise MemvizError(f"no transformer family reads model_type {cfg.model_type!r}")
        layers, heads = int(cfg.num_hidden_layers), int(cfg.num_attention_heads)
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        context = getattr(cfg, "max_position_embeddings", None)
        self.info = ModelInfo(
            name=name,
            source=source,
            architecture=self.family.name,
            num_layers=layers,
            hidden_size=int(cfg.hidden_size),
            num_heads=heads,
            vocab_size=int(cfg.vocab_size),
            context_size=int(context) if context else None,
            kind=TRANSFORMER,
            num_kv_heads=int(kv_heads),
            sliding_window=layer_windows(cfg, self.family),
            attn_softcap=getattr(cfg, "attn_logit_softcapping", None),
            dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
            start_ids=run_start_ids(tokenizer),
        )
        # The fingerprint of a GPT-2 is what it was before other families came ("gpt2:V").
        self._fingerprint = weights_fingerprint(
            dict(model.state_dict()), extra=f"{cfg.model_type}:{cfg.vocab_size}"
        )
        # Rows leave the device once per step, already in the Trace's dtype: torch converts to float16
        # in microseconds, numpy takes milliseconds on attention's float16-subnormal weights (issue 7).
        self._row_dtype = torch.float16 if attention_dtype_for(self.info) == np.float16 else torch.float32
        self.memory_key_point = hook_name(LN2_OUT, layers - 1)
        self._key_module, self._key_from, self.key_source = self._find_key_module()
        self.memory_key_dim = int(cfg.hidden_size)
        self._token_cache: dict[int, str] = {}
        self._bytes_cache: dict[int, bytes] = {}
        self._interventions = None  # a TransformerInterventions while a run has any (set_interventions)
        self.logit_lens = False  # True: each step's internals also hold LENS_LOGITS (backends.logit_lens)
        self._lens_head = None
        # q/k capture (trace format 2) where the family allows it; dense rows otherwise
        modules = qk_capture.attention_modules(model)
        self._layer_of = {id(m): layer for layer, m in enumerate(modules)}
        self._model_dense_reason = qk_capture.dense_reason(model, self.family.name)
        self._layout = (
            None
            if self._model_dense_reason
            else qk_capture.attention_layout(model, self.family.name, self.info.sliding_window)
        )
        # Dense rows until a caller asks for q/k (the Session does, unless --dense-attention): a caller
        # that steps the backend itself reads ATTENTION_ROW as it always did.
        self._dense_requested: str | None = "dense rows asked for (the default outside a Session)"
        self.last_seen: dict[int, tuple] = {}  # the last step's (scaling, softcap) per layer, as passed
        query_dtype = qk_capture.query_dtype_for(self.info)
        self._query_dtype = torch.float16 if query_dtype == np.float16 else torch.float32
        self._use_implementation()
        self.reset()

    # -- attention storage -------------------------------------------------------------------
    @property
    def attention_dense_reason(self) -> str | None:
        """Why this run records dense attention rows rather than q/k (None: it records q/k)."""
        if self._model_dense_reason:
            return self._model_dense_reason
        if self._dense_requested:
            return self._dense_requested
        plan = self._interventions
        if plan is not None and (plan.masks or plan.window is not None):
            return "a mask: or context: intervention changes which keys a query sees"
        return None

    @property
    def attention_layout(self) -> dict | None:
        """How a row is rebuilt from this run's q and k (memviz.core.attention_store); None: dense rows."""
        return None if self.attention_dense_reason else dict(self._layout)

    def set_attention_storage(
        self, storage: str, reason: str = "dense rows asked for (--dense-attention)"
    ) -> None:
        """ "qk" (rebuild rows from queries and keys, where the family allows it) or "dense" (record
        every row, trace format 1; `reason` goes in the manifest). Steps from now on."""
        if storage not in ("qk", "dense"):
            raise MemvizError(f"attention storage is 'qk' or 'dense', not {storage!r}")
        self._dense_requested = reason if storage == "dense" else None
        self._use_implementation()

    def _use_implementation(self) -> None:
        # memviz_eager wherever the family routes through the interface, dense runs too (they record
        # each head's distance from it); plain eager for the rest (GPT-Neo, reorder_and_upcast_attn)
        want = "eager" if self._model_dense_reason else IMPLEMENTATION
        if self.model.config._attn_implementation != want:
            self.model.set_attn_implementation(want)

    def _find_key_module(self) -> tuple[torch.nn.Module, str, str]:
        """The family's key module, or the fallback: the base model's final normed hidden state."""
        path = (self.family.key_module or "").format(last=self.info.num_layers - 1)
        module = _module(self.model, path) if path else None
        if module is not None:
            return module, self.family.key_from, path
        return self.model.base_model, "last_hidden_state", f"{self.model.base_model_prefix} (final norm)"

    @classmethod
    def load(
        cls,
        source: str,
        local: bool,
        name: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> TransformerBackend:
        from memviz.backends.transformers_load import load_causal_lm

        model, tokenizer, family = load_causal_lm(source, local, resolve_device(device), resolve_dtype(dtype))
        return cls(
            model,
            tokenizer,
            name=name or (Path(source).name if local else source),
            source=source,
            family=family,
        )

    @contextmanager
    def _capturing_key(self):
        """Yields a list that holds the key ([tokens, D]) once the forward pass inside has run.

        Only this thread's pass is captured: a pass on another thread cannot slip its output in.
        """
        captured: list[torch.Tensor] = []
        thread = threading.get_ident()
        dim = self.memory_key_dim

        def keep(value: torch.Tensor) -> None:
            if threading.get_ident() == thread:
                captured.append(value.reshape(-1, dim))  # OPT flattens batch x tokens inside its layers

        if self._key_from == "input":
            handle = self._key_module.register_forward_pre_hook(lambda _m, args: keep(args[0]))
        elif self._key_from == "last_hidden_state":
            handle = self._key_module.register_forward_hook(lambda _m, _i, out: keep(out.last_hidden_state))
        else:
            handle = self._key_module.register_forward_hook(lambda _m, _i, out: keep(out))
        try:
            yield captured
        finally:
            handle.remove()

    def encode(self, text: str) -> Encoding:
        return Encoding(ids=list(self.tokenizer.encode(text, add_special_tokens=False)))

    def token_text(self, token_id: int) -> str:
        text = self._token_cache.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id])
            self._token_cache[token_id] = text
        return text

    def token_bytes(self, token_id: int) -> bytes:
        """The token's own bytes: a byte-level BPE token may hold part of a UTF-8 character."""
        found = self._bytes_cache.get(token_id)
        if found is None:
            found = self._bytes_cache[token_id] = token_bytes_of(self.tokenizer, token_id)
        return found

    def fingerprint(self) -> str:
        return self._fingerprint

    def hook_points(self) -> tuple[str, ...]:
        """What a step returns now: dense rows or (format 2) queries and keys, and the distances."""
        from memviz.backends.hook_points import ATTN_DISTANCE, ATTN_K, ATTN_Q

        attention = (ATTN_PATTERN,) if self.attention_dense_reason else (ATTN_Q, ATTN_K)
        return (*per_layer((*attention, ATTN_DISTANCE), self.info.num_layers), self.memory_key_point)

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def position(self) -> int:
        return self._position

    def reset(self) -> None:
        self._cache = self._cache_cls(config=self.model.config)
        self._position = 0
        self._ids: list[int] = []  # every token read: context:W re-reads the last W

    def set_interventions(self, specs) -> None:
        """Steps from now on carry out these specs (memviz.core.interventions; () = none)."""
        from memviz.backends.transformer_interventions import TransformerInterventions

        plan = TransformerInterventions(self.model, self.family.name, self.info.num_heads, specs)
        self._interventions = plan if specs else None
        self._use_implementation()

    @torch.inference_mode()
    def restore(self, token_ids, states=None) -> np.ndarray:
        """Reset and read `token_ids` without stepping: one batched pass of the base model (no LM
        head, no attention weights kept) fills the KV cache under the interventions set (ablated
        heads, masked keys with their own positions). Under context:W there is no cache: steps
        before W see tokens 0..t from position 0 (one causal pass), each later one its own window.
        `states` are not needed (a transformer's state is its cache). Returns the keys [n, D]."""
        self.reset()
        ids = [int(t) for t in token_ids]
        n = len(ids)
        if not n:
            return np.zeros((0, self.memory_key_dim), np.float32)
        plan, base, device = self._interventions, self.model.base_model, self.model.device
        window = plan.window if plan is not None else None
        first = n if window is None else min(n, window)
        inputs: dict = {"input_ids": torch.tensor([ids[:first]], device=device)}
        if window is None:
            inputs.update(cache=self._cache, use_cache=True)
            if plan is not None and plan.masks:  # as each step passes them (forward_inputs)
                keep = torch.ones(1, n, dtype=torch.long, device=device)
                for start, end in plan.masks:
                    keep[0, start : end + 1] = 0
                inputs.update(attention_mask=keep, position_ids=torch.arange(n, device=device).unsqueeze(0))
        else:
            inputs["use_cache"] = False
        keys = []
        with self._ablating():
            with self._capturing_key() as key:
                base(**inputs)
            keys.append(key[-1])
            for t in range(first, n):  # context:W past the window: the step's own pass, its last key
                with self._capturing_key() as key:
                    base(**plan.forward_inputs(ids[: t + 1], None))
                keys.append(key[-1][-1:])
        self._ids = ids
        self._position = n
        return torch.cat(keys).to("cpu", torch.float32).numpy()

    @torch.inference_mode()
    def reprime(self, keep: int) -> dict[str, np.ndarray]:
        """Slide the window (`memviz trace --slide`): a fresh cache holding only the last `keep`
        tokens read, re-encoded at positions 0..keep-1 in one batched pass (head ablations apply),
        so the next step is the model reading exactly that window and its token. Returns the pass's
        queries [keep, L, A, d] and keys [keep, L, A_kv, d] (ATTENTION_Q, ATTENTION_K) where this run
        records q/k (the window's prefix: memviz.core.sliding), {} where it records dense rows."""
        plan = self._interventions
        if plan is not None and (plan.masks or plan.window is not None):
            raise MemvizError("a window cannot slide under a mask: or context: intervention")
        if not 0 <= keep <= self._position:
            raise MemvizError(f"cannot keep {keep} of the {self._position} tokens in the cache")
        ids = self._ids[len(self._ids) - keep :] if keep else []
        self._cache = self._cache_cls(config=self.model.config)
        self._position = 0
        dense = self.attention_dense_reason is not None
        sink = QKSink(self._layer_of, self.info.num_layers)
        if ids:
            inputs = {"input_ids": torch.tensor([ids], device=self.model.device)}
            with self._ablating(), capturing(sink):
                self.model.base_model(**inputs, cache=self._cache, use_cache=True)
        self._position = keep
        if dense:
            return {}
        if not ids:
            lay, layers = self._layout, self.info.num_layers
            q_dtype = np.float16 if self._query_dtype == torch.float16 else np.float32
            return {
                ATTENTION_Q: np.zeros((0, layers, lay["num_heads"], lay["head_dim"]), q_dtype),
                ATTENTION_K: np.zeros((0, layers, lay["num_kv_heads"], lay["head_dim"]), np.float32),
            }
        queries, keys = sink.arrays(self._query_dtype)
        return {ATTENTION_Q: queries, ATTENTION_K: keys}

    def _step_inputs(self) -> dict:
        if self._interventions is not None:
            return self._interventions.forward_inputs(self._ids, self._cache)
        ids = torch.tensor([self._ids[-1:]], device=self.model.device)
        return {"input_ids": ids, "cache": self._cache, "use_cache": True}

    def _ablating(self):
        return self._interventions.ablating() if self._interventions is not None else nullcontext()

    @torch.inference_mode()
    def step(self, token_id: int) -> StepOutput:
        context = self.info.context_size
        windowed = self._interventions is not None and not self._interventions.uses_cache  # context:W
        if context is not None and self._position >= context and not windowed:
            raise ContextFullError(f"context window full: {self.info.name} reads at most {context} tokens")
        self._ids.append(token_id)
        dense = self.attention_dense_reason is not None
        sink = QKSink(self._layer_of, self.info.num_layers)
        with self._capturing_key() as key, self._ablating(), capturing(sink):
            out = self.model(
                **self._step_inputs(),
                output_attentions=dense,
                output_hidden_states=self.logit_lens,
            )
        self._position += 1
        if dense:
            internals = {ATTENTION_ROW: self._dense_rows(out.attentions)}
        else:
            queries, keys = sink.arrays(self._query_dtype)
            internals = {ATTENTION_Q: queries[-1], ATTENTION_K: keys[-1]}
            self.last_seen = sink.seen
        distances = sink.distances()  # the panel's mean distance without rebuilding every row
        if distances is not None:
            internals[ATTENTION_DISTANCE] = distances[-1]
        if self.logit_lens:
            from memviz.backends.logit_lens import LENS_LOGITS, transformer_head, transformer_lens

            if self._lens_head is None:
                self._lens_head = transformer_head(self.model, self.family.name)
            internals[LENS_LOGITS] = transformer_lens(self._lens_head, out.hidden_states, out.logits[0, -1])
        return StepOutput(
            logits=out.logits[0, -1].to("cpu", torch.float32),
            memory_key=key[-1][-1].to("cpu", torch.float32).numpy().copy(),
            internals=internals,
        )

    def _dense_rows(self, attentions) -> np.ndarray:
        """This step's row of every layer and head, [L, A, t+1] in the trace's dtype."""
        # attentions: per layer [1, A, q, n], n = t+1 or (sliding layers, context:W) the last n keys;
        # the last query is this step's (q > 1 under context:W)
        t1 = self._position
        if all(a.shape[-1] == t1 for a in attentions):
            rows = torch.cat([a[0, :, -1, :] for a in attentions])
        else:
            rows = attentions[0].new_zeros(self.info.num_layers * self.info.num_heads, t1)
            for layer, a in enumerate(attentions):
                n = a.shape[-1]
                rows[layer * self.info.num_heads : (layer + 1) * self.info.num_heads, t1 - n :] = a[
                    0, :, -1, :
                ]
        return rows.view(self.info.num_layers, self.info.num_heads, t1).to("cpu", self._row_dtype).numpy()

    @torch.inference_mode()
    def score(
        self, ids: torch.Tensor, targets: torch.Tensor, attentions: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """log p of targets [B, K] at the last K positions of ids [B, T]: one forward pass over the
        batch, no cache (the step state is untouched), no interventions. With `attentions`, every
        layer's weights [B, A, T, T] too (the experiments' induction score)."""
        k = targets.shape[1]
        out = self.model(
            input_ids=ids.to(self.model.device),
            use_cache=False,
            output_attentions=attentions,
            logits_to_keep=k,
        )
        logp = torch.log_softmax(out.logits[:, -k:].float(), dim=-1)
        picked = logp.gather(-1, targets.to(logp.device).unsqueeze(-1)).squeeze(-1).cpu()
        if attentions and not out.attentions:
            raise MemvizError(f"{self.info.name}: its attention implementation returns no weights")
        return picked, (out.attentions if attentions else None)

    def document_keys(self, token_ids: list[int]) -> Iterator[np.ndarray]:
        """Keys after tokens 0 .. n-2: whole windows in one forward pass each (no KV cache, so the
        step state is untouched), overlapping as document_windows says; the hook is gone before
        each window's keys are handed out."""
        ids = list(token_ids)[:-1]
        base = self.model.base_model  # the key is inside it; the LM head (V x D per token) is not needed
        for start, first_new, length in document_windows(len(ids), self.info.context_size):
            window = torch.tensor([ids[start : start + length]], device=self.model.device)
            with torch.inference_mode(), self._capturing_key() as key:
                base(input_ids=window, use_cache=False)
            yield from key[-1].to("cpu", torch.float32).numpy()[first_new - start :]


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
