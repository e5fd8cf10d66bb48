"""A Session runs a model over text: reads the prompt, generates, recalls, and appends to the Trace.

It is Qt-free and single-threaded; the app calls `step()` from its worker thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from memviz.backends.base import Backend
from memviz.backends.logit_lens import LENS_CANDIDATES, LENS_LOGITS, lens_distributions, lens_top_k
from memviz.core import interventions as intervention_specs
from memviz.core.knn_keys import KnnKeys
from memviz.core.sampling import Sampler, SamplingConfig, kept_top_k, top_k_of
from memviz.core.trace import KEPT_CANDIDATES, StepRecord, Trace
from memviz.errors import MemvizError
from memviz.memory.knn import knn_distribution, mix

if TYPE_CHECKING:  # torch takes seconds to import; the window imports this module (issue 7)
    import torch

# A recurrent run reads any length: its trace goes to disk as it is read (memviz.core.run_folder),
# so RAM does not grow with it and the disk is the real bound (a full one stops the run, one line).
# This only refuses absurd requests (10**8 tokens: a day of reading, a terabyte of the bundled LSTM);
# a transformer stays bounded by its context window.
MAX_TOKENS = 10**8
# --slide with dense attention rows (GPT-Neo, --dense-attention): the rows of T steps hold T²/2 numbers
# per head, so such a run stops where they would pass this (never before the model's own window).
DENSE_SLIDE_BYTES = 2**30


class MemoryIndex(Protocol):
    """What the Session needs of a long-term memory store.

    A store may also have `get(ids) -> list[MemoryRecord | None]` (MemoryStore does): the Session then
    saves in the Trace what the memory panel shows of each memory it retrieves, once per id, so a
    saved trace draws its snippets without the store. An index without it records ids and scores only.
    """

    def search(self, key: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ids [k] (-1 = none), squared-L2 distances [k], next-token values [k]; nearest first."""
        ...

    def manifest(self) -> dict: ...


@dataclass(frozen=True)
class RecallSettings:
    k: int = 16
    lam: float = 0.25
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise MemvizError(f"--knn-k must be at least 1, got {self.k}")
        if not 0 <= self.lam <= 1:
            raise MemvizError(f"--knn-lambda must be in [0, 1], got {self.lam}")
        if not self.temperature > 0:
            raise MemvizError(f"kNN temperature must be above 0, got {self.temperature}")


def softmax64(logits: torch.Tensor) -> np.ndarray:
    """The next-token distribution in float64, computed in numpy.

    Not torch.softmax(logits.double()): on 2 threads its float64 kernel took 8 ms for GPT-2's
    50,257 logits on this machine (0.08 ms on one thread), a third of the model's own step.
    """
    x = logits.detach().float().cpu().numpy().astype(np.float64)
    x -= x.max()
    np.exp(x, out=x)
    x /= x.sum()
    return x


def _pad_window_rows(internals: dict, steps: int) -> None:
    """A sliding window's dense rows are over its own tokens: zeros in front for those before it."""
    from memviz.backends.hook_points import ATTENTION_ROW

    rows = internals.get(ATTENTION_ROW)
    if rows is not None and rows.shape[-1] < steps + 1:
        padded = np.zeros((*rows.shape[:-1], steps + 1), dtype=rows.dtype)
        padded[..., steps + 1 - rows.shape[-1] :] = rows
        internals[ATTENTION_ROW] = padded


class Session:
    def __init__(
        self,
        backend: Backend,
        sampling: SamplingConfig | None = None,
        memory: MemoryIndex | None = None,
        recall: RecallSettings | None = None,
        max_tokens: int = MAX_TOKENS,
        interventions: Sequence[intervention_specs.Intervention] = (),
        logit_lens: bool = False,
        dense_attention: bool = False,
        slide: bool | int | None = None,
    ) -> None:
        self.backend = backend
        self.slide = slide  # read past the window in windows that slide: True (stride window // 2), a stride
        # True: dense attention rows (trace format 1, `memviz trace --dense-attention`); False: queries
        # and keys where the backend can record them (format 2), rows rebuilt on demand
        self.dense_attention = dense_attention
        self.set_interventions(interventions)
        self.logit_lens = logit_lens
        if logit_lens:
            if getattr(backend, "logit_lens", None) is None:
                raise MemvizError(
                    f"{backend.info.name} has no logit lens (transformers and recurrent models do)"
                )
            if backend.info.extra.get("head") == "classifier":
                raise MemvizError(f"{backend.info.name} is a classifier: it has no next-token lens")
            backend.logit_lens = True
        self.sampling = sampling or SamplingConfig(temperature=0.0)
        self.memory = memory
        self.recall = recall or RecallSettings()
        self.max_tokens = max_tokens
        self.warnings: list[str] = []
        self.stop_reason: str | None = None
        self.stride = self._slide_stride()
        self.reset()

    # -- set-up -----------------------------------------------------------------------------
    def reset(self) -> None:
        self.backend.reset()
        self.sampler = Sampler(self.sampling)
        choose = getattr(self.backend, "set_attention_storage", None)
        if choose is not None:
            choose("dense" if self.dense_attention else "qk")
        self.trace = Trace.for_model(
            self.backend.info,
            sampling=self.sampling.as_manifest(),
            memory=self._memory_manifest(),
            attention_layout=getattr(self.backend, "attention_layout", None),
            attention_reason=getattr(self.backend, "attention_dense_reason", None),
        )
        self.trace.extra_manifest["interventions"] = intervention_specs.to_manifest(self.interventions)
        self.stride = self._slide_stride()  # the interventions may have changed since
        if self.stride is not None:
            self.trace.enable_sliding(self.backend.info.context_size, self.stride)
        self._queue: deque[int] = deque()
        self._to_generate = 0
        self._last_probs: np.ndarray | None = None
        self._last_lens: np.ndarray | None = None  # the last step's lens distributions [L, V]
        self._last_lm_probs: np.ndarray | None = None  # with a memory: the model's own, unmixed
        # kNN keys per step, for remembering this run: beside the run on disk (RAM stays flat)
        self.keys = KnnKeys(self.trace.run_file_folder)
        self.warnings = []
        self.stop_reason = None

    def _slide_stride(self) -> int | None:
        """The stride `slide` asks for (None: the run stops at the window), checked against the model."""
        slide = self.slide
        if slide is None or slide is False:
            return None
        window = self.backend.info.context_size
        name = self.backend.info.name
        if getattr(self.backend, "reprime", None) is None or not window:
            raise MemvizError(f"--slide: {name} has no context window to slide (transformers have)")
        if any(s.kind in ("context", "mask") for s in self.interventions):
            raise MemvizError(
                "--slide: not with a context: or mask: intervention (they place tokens by position)"
            )
        stride = max(1, window // 2) if slide is True else slide
        if type(stride) is not int or not 1 <= stride <= window:
            raise MemvizError(f"--slide {slide}: the stride must be 1 to {window} tokens ({name}'s window)")
        return stride

    def set_interventions(self, specs: Sequence[intervention_specs.Intervention]) -> None:
        """Check the specs against the model (before any step) and hand them to the backend; the
        next reset starts a run with them (the app's Run -> Intervene)."""
        self.interventions = tuple(specs)
        intervention_specs.check_for_model(self.interventions, self.backend.info)
        apply = getattr(self.backend, "set_interventions", None)
        if apply is None and self.interventions:
            raise MemvizError(f"{self.backend.info.name}'s backend takes no interventions")
        if apply is not None:
            apply(self.interventions)  # () too: a backend shared with an earlier session forgets its

    def resume_from(self, trace: Trace, step: int, text: str) -> int:
        """A new run over `text` under the current interventions that takes `trace`'s steps before
        `step` over instead of reading them again: `trace` is a run of this model over the same text
        whose steps before `step` the interventions now do not change (memviz.core.resume says which
        step a change touches first). Those rows are copied as they are, the backend's state after
        them is restored without stepping (Backend.restore) and the rest of the text is queued.
        Returns how many steps were taken over (0: the text is read from the start)."""
        from memviz.core import resume

        self.reset()
        self.feed(text)
        ids = list(self._queue)
        n = resume.steps_to_take_over(trace, self.trace, ids, step, lens=self.logit_lens)
        restore = getattr(self.backend, "restore", None)
        if self.stride is not None:  # a restored cache holds one window: take over the first only
            n = min(n, self.backend.info.context_size)
        if n == 0 or restore is None:
            return 0
        self.keys.extend(restore(ids[:n], resume.prefix_states(trace, n)))
        resume.copy_steps(trace, self.trace, n)
        for _ in range(n):
            self._queue.popleft()
        return n

    def _memory_manifest(self) -> dict | None:
        if self.memory is None:
            return None
        return {
            **self.memory.manifest(),
            "k": self.recall.k,
            "lambda": self.recall.lam,
            "temperature": self.recall.temperature,
        }

    def set_sampling(self, sampling: SamplingConfig) -> None:
        """New settings apply to tokens generated from now on; the seed restarts the generator."""
        self.sampling = sampling
        self.sampler = Sampler(sampling)
        self.trace.sampling = sampling.as_manifest()

    def set_memory(self, memory: MemoryIndex | None, recall: RecallSettings | None = None) -> None:
        if memory is not self.memory:
            self.trace.memory_records.clear()  # ids from now on are another store's
        self.memory = memory
        if recall is not None:
            self.recall = recall
        self.trace.memory = self._memory_manifest()

    @property
    def window(self) -> int | None:
        """The context window that bounds a run: the model's, or none under context:W, where every
        step sees only the last W tokens (W within the window), so a transformer reads on past it."""
        if any(s.kind == "context" for s in self.interventions):
            return None
        return self.backend.info.context_size

    @property
    def capacity(self) -> int:
        """Tokens this run can still hold: the context window for a transformer, MAX_TOKENS otherwise."""
        limit = self.window or self.max_tokens
        if self.stride is not None:  # --slide: the window does not bound the run
            limit = self._dense_slide_limit() or self.max_tokens
        return min(limit, self.max_tokens) - len(self.trace) - len(self._queue)

    def _dense_slide_limit(self) -> int | None:
        """With --slide and dense rows: the steps whose rows fit DENSE_SLIDE_BYTES (at least the
        window); None where the run records q/k (a row of it costs nothing until asked for)."""
        if self.stride is None or getattr(self.backend, "attention_dense_reason", None) is None:
            return None
        from memviz.backends.dtypes import attention_dtype_for

        info = self.backend.info
        per_pair = info.num_layers * info.num_heads * np.dtype(attention_dtype_for(info)).itemsize
        return max(info.context_size, int((2 * DENSE_SLIDE_BYTES / per_pair) ** 0.5))

    def feed(self, text: str) -> list[str]:
        """Queue text to read after what is already queued. Returns warnings for the user."""
        if not text:
            raise MemvizError("empty text: nothing to read")
        encoding = self.backend.encode(text)
        warnings: list[str] = []
        if encoding.unknown_count:
            warnings.append(
                f"{encoding.unknown_count} character(s) are not in {self.backend.info.name}'s vocabulary "
                "and were read as the unknown token"
            )
        ids = encoding.ids
        if not ids:
            raise MemvizError("empty text: it encodes to no tokens")
        if len(self.trace) == 0 and not self._queue:  # a run starts as the model was trained to
            ids = [*self.backend.info.start_ids, *ids]
        room = self.capacity
        if len(ids) > room:
            window = self.window
            what = (
                f"context window of {window} tokens"
                if window and self.stride is None
                else f"limit of {min(self.max_tokens, self._dense_slide_limit() or self.max_tokens)} tokens a run"
            )
            warnings.append(f"text cut to {max(room, 0)} of {len(ids)} tokens: the model's {what} is full")
            ids = ids[: max(room, 0)]
        self._queue.extend(ids)
        if len(self.trace) == 0:
            self.trace.prompt_tokens = len(self._queue)
        else:
            self.trace.prompt_tokens = max(self.trace.prompt_tokens, len(self.trace) + len(self._queue))
        self.warnings.extend(warnings)
        return warnings

    def generate(self, n: int) -> None:
        if n < 0:
            raise MemvizError(f"--generate must be 0 or more, got {n}")
        self._to_generate += n

    @property
    def pending(self) -> int:
        return len(self._queue) + self._to_generate

    def cancel(self) -> None:
        """Drop what is queued; what was read stays in the trace."""
        self._queue.clear()
        self._to_generate = 0

    # -- running ----------------------------------------------------------------------------
    def step(self) -> int | None:
        """Read one token (queued text first, then a sampled one). Returns its step index, or None."""
        sampled = None
        if self._queue:
            token, generated = self._queue.popleft(), False
        elif self._to_generate > 0:
            if self._last_probs is None:
                if self.backend.info.extra.get("head") == "classifier":
                    raise MemvizError(f"{self.backend.info.name} is a classifier: it generates no text")
                raise MemvizError("nothing to generate from: read some text first")
            sampled = self.sampler.filtered(self._last_probs)  # what the token is drawn from, recorded
            token, generated = self.sampler.draw(sampled), True
            self._to_generate -= 1
        else:
            return None
        window = self.window
        full = window is not None and self.backend.position >= window
        if full and self.stride is None:
            self.cancel()
            self.stop_reason = (
                f"context window full ({window} tokens): reset to read more, or read on in windows "
                "that slide (--slide; Run > Read past the context window)"
            )
            return None
        if len(self.trace) >= self.max_tokens:
            self.cancel()
            self.stop_reason = f"limit of {self.max_tokens} tokens a run reached: reset to read more"
            return None
        dense_limit = self._dense_slide_limit()
        if dense_limit is not None and len(self.trace) >= dense_limit:
            self.cancel()
            self.stop_reason = (
                f"limit of {dense_limit} tokens for dense attention rows with --slide reached "
                "(they grow as T squared; a q/k run reads on): reset to read more"
            )
            return None
        if full:
            self._slide_window(window)
        return self._read(token, generated, sampled)

    def _slide_window(self, window: int) -> None:
        """The cache is full: keep its last window - stride tokens, re-encoded from position 0 (the
        backend's reprime), and begin a new window in the trace with their queries and keys."""
        from memviz.backends.qk_capture import ATTENTION_K, ATTENTION_Q

        keep = window - self.stride
        step = len(self.trace)
        prefix = self.backend.reprime(keep)
        self.trace.start_window(step, step - keep, prefix.get(ATTENTION_Q), prefix.get(ATTENTION_K))

    def _read(self, token: int, generated: bool, sampled: np.ndarray | None = None) -> int:
        out = self.backend.step(token)
        self._fill_targets(token)
        if self.stride is not None:
            _pad_window_rows(out.internals, len(self.trace))
        if out.logits is None:  # a classifier: its answer is in the internals (PREDICTION)
            return self._read_without_lm(out, token, generated)
        p_lm = softmax64(out.logits)
        memory: dict[str, np.ndarray] = {}
        probs = p_lm
        if self.memory is not None:
            ids, distances, values = self.memory.search(out.memory_key, self.recall.k)
            self._record_memories(ids)
            p_knn = knn_distribution(values, distances, len(p_lm), self.recall.temperature)
            probs = mix(p_lm, p_knn, self.recall.lam)
            scores = np.where(ids >= 0, -np.asarray(distances, dtype=np.float32), -np.inf)
            memory = {
                "memory_ids": np.asarray(ids, dtype=np.int64),
                "memory_scores": scores.astype(np.float32),
            }
            memory["lm_topk_ids"], memory["lm_topk_probs"] = top_k_of(p_lm, KEPT_CANDIDATES)
            memory["knn_topk_ids"], memory["knn_topk_probs"] = top_k_of(p_knn, KEPT_CANDIDATES)
        topk_ids, topk_probs = top_k_of(probs, KEPT_CANDIDATES)
        memory.update(self._target_columns(probs, p_lm if self.memory is not None else None))
        memory.update(self._lens_columns(out.internals.pop(LENS_LOGITS, None)))
        # the distribution a generated token was drawn from (after temperature, top-k, top-p): its
        # kept top K on the token's own step; a read token's step holds ids -1 and NaN
        if sampled is not None:
            memory["sample_topk_ids"], memory["sample_topk_probs"] = kept_top_k(sampled, KEPT_CANDIDATES)
        else:
            memory["sample_topk_ids"] = np.full(len(topk_ids), -1, dtype=np.int64)
            memory["sample_topk_probs"] = np.full(len(topk_ids), np.nan, dtype=np.float32)
        vocab = self.trace.vocab
        for ids in (
            topk_ids,
            memory.get("lm_topk_ids", ()),
            memory.get("knn_topk_ids", ()),
            memory["sample_topk_ids"][memory["sample_topk_ids"] >= 0],
            memory["lens_topk_ids"][memory["lens_topk_ids"] >= 0] if "lens_topk_ids" in memory else (),
        ):
            for token_id in ids:
                if int(token_id) not in vocab:
                    vocab[int(token_id)] = self.backend.token_text(int(token_id))
        self._last_probs = probs
        self._last_lm_probs = p_lm if self.memory is not None else None
        self.keys.append(out.memory_key)
        return self.trace.append(
            StepRecord(
                token_id=token,
                token_text=self.backend.token_text(token),
                generated=generated,
                topk_ids=topk_ids,
                topk_probs=topk_probs,
                internals=out.internals,
                memory=memory,
                token_bytes=self._token_bytes(token),
            )
        )

    def _target_columns(self, probs: np.ndarray, p_lm: np.ndarray | None) -> dict[str, np.ndarray]:
        """This step's entropy (nats, over the full distribution) and NaN target log-probs, which
        the next token's step fills (`_fill_targets`): the last step has no next token."""
        nonzero = probs[probs > 0]
        columns = {
            "entropy": np.float32(-(nonzero * np.log(nonzero)).sum()),
            "target_logprob": np.float32(np.nan),
        }
        if p_lm is not None:  # with a memory: the model's own, before mixing, too
            columns["lm_target_logprob"] = np.float32(np.nan)
        return columns

    def _lens_columns(self, lens_logits: np.ndarray | None) -> dict[str, np.ndarray]:
        """Per layer the lens's top K and (filled by the next step) the next token's probability."""
        if lens_logits is None:
            self._last_lens = None
            return {}
        self._last_lens = lens_distributions(lens_logits)
        ids, probs = lens_top_k(self._last_lens, LENS_CANDIDATES)
        target = np.full(len(ids), np.nan, dtype=np.float32)
        return {"lens_topk_ids": ids, "lens_topk_probs": probs, "lens_target_prob": target}

    def _fill_targets(self, token: int) -> None:
        """The previous step's log p (and lens p) of `token`, the token that actually came next, from
        that step's full distributions (the trace keeps only their top K)."""
        step = len(self.trace) - 1
        if step < 0 or self._last_probs is None or not self.trace.has("target_logprob"):
            return
        with np.errstate(divide="ignore"):
            self.trace.fill("target_logprob", step, np.log(self._last_probs[token]))
            if self._last_lm_probs is not None and self.trace.has("lm_target_logprob"):
                self.trace.fill("lm_target_logprob", step, np.log(self._last_lm_probs[token]))
        if self._last_lens is not None and self.trace.has("lens_target_prob"):
            self.trace.fill("lens_target_prob", step, self._last_lens[:, token])

    def _token_bytes(self, token: int) -> bytes:
        """The token's exact bytes, from the backend where it knows them (byte-level BPE), else the
        UTF-8 of its text."""
        of = getattr(self.backend, "token_bytes", None)
        return of(token) if of is not None else self.backend.token_text(token).encode("utf-8")

    def _read_without_lm(self, out, token: int, generated: bool) -> int:
        """A step of a model with no next-token distribution: no candidates (K = 0), no kNN mixing,
        nothing to generate from."""
        self._last_probs = None
        self._last_lens = None
        self.keys.append(out.memory_key)
        return self.trace.append(
            StepRecord(
                token_id=token,
                token_text=self.backend.token_text(token),
                generated=generated,
                topk_ids=np.zeros(0, dtype=np.int64),
                topk_probs=np.zeros(0, dtype=np.float32),
                internals=out.internals,
            )
        )

    def _record_memories(self, ids: np.ndarray) -> None:
        """Save in the Trace, before the step is appended, the records of memories it sees first."""
        if self.trace.memory is not None and hasattr(self.memory, "__len__"):
            # documents added during the run: the manifest (and the figure) say what was recalled from
            self.trace.memory["entries"] = len(self.memory)
        get = getattr(self.memory, "get", None)
        if get is None:
            return
        known = self.trace.memory_records
        new = list(dict.fromkeys(int(i) for i in ids if i >= 0 and int(i) not in known))
        if new:
            self.trace.add_memory_records(record for record in get(new) if record is not None)

    def run(self, progress=None, cancelled=None) -> int:
        """Step until nothing is pending; returns the number of steps taken."""
        steps = 0
        while self.pending and not (cancelled and cancelled()):
            if self.step() is None:
                break
            steps += 1
            if progress:
                progress(steps)
        return steps

    @property
    def last_distribution(self) -> np.ndarray | None:
        """The full next-token distribution after the last step (the trace keeps only the top K)."""
        return self._last_probs
