"""Two runs over the same tokens as one Trace-like record of their difference, B - A (no Qt).

`TraceDiff(a, b)` answers the read API the panels use (`memviz.core.trace.Trace`) with B's tokens
and, for every per-step quantity that means the same thing at the same place in both runs, B's
array minus A's: hidden and cell states, gates, attention rows, the logit lens' target probability,
`target_logprob`, `entropy`. Quantities whose entries have no fixed meaning by position (the top-k
candidates, which differ in identity from run to run; retrieved memories; any `*_ids` column) are
not part of it (`has` is False), so a view never shows a number that is not a difference.

Differences are only defined between two runs of the same model (same architecture and shapes,
`same_model`); between two models sharing a tokenizer only the next-token quantities are compared
(`target_logprob`, `entropy`). `check_comparable` gives the one-line reason when two runs cannot be
compared at all (their tokens differ), as `memviz compare` does.

The steps compared are those both runs have read with the same tokens, from the start: the run on
screen may still be reading (an intervention's re-read), so `len` follows it.

`NamedRun(a, "A")` is run A as itself, named "… (A)", so a view of A says which run it shows.
"""

from __future__ import annotations

import numpy as np

from memviz.core.trace import Trace

# per-step columns that are the same quantity whatever the model (a difference of two models' runs)
PREDICTION_KEYS = ("target_logprob", "entropy")
# columns whose entries are identified by rank or id, not by place: no difference is meaningful
_UNALIGNED = frozenset(Trace.MEMORY_KEYS) | {"topk_probs", "lens_topk_probs"}
_SHAPE_KEYS = ("architecture", "num_layers", "hidden_size", "num_heads", "vocab_size")
DIFF_SUFFIX = " (B \u2212 A)"


def shared_prefix(a: Trace, b: Trace) -> int:
    """Steps from the start where `a` and `b` read the same tokens."""
    n = min(len(a), len(b))
    ids_a, ids_b = a.token_ids, b.token_ids
    return next((t for t in range(n) if ids_a[t] != ids_b[t]), n)


def check_comparable(a: Trace, b: Trace, names: tuple[str, str] = ("A", "B")) -> str | None:
    """Why `a` and `b` cannot be compared (one line), or None: the same tokens are required, as
    `memviz compare` requires them (two models sharing a tokenizer read the same token ids)."""
    if not len(a) or not len(b):
        return f"{names[0] if not len(a) else names[1]} has no steps: nothing to compare"
    first = shared_prefix(a, b)
    if first < max(len(a), len(b)):
        if first < min(len(a), len(b)):
            where = f"at step {first}: {a.token_label(first)!r} vs {b.token_label(first)!r}"
        else:
            where = f"in length: {len(a)} vs {len(b)} tokens"
        return f"{names[0]} and {names[1]} read different tokens (they differ {where}); compare runs over the same tokens"
    return None


def same_model(a: Trace, b: Trace) -> bool:
    """Whether two runs are of one model (its internals can be subtracted): same name and shapes."""
    keys = ("name", *_SHAPE_KEYS)
    return all(a.model.get(k) == b.model.get(k) for k in keys)


def is_difference(trace: object) -> bool:
    """True for a TraceDiff (what panels check to colour around zero)."""
    return isinstance(trace, TraceDiff)


class TraceDiff:
    """B - A over the tokens both runs share from the start; B's tokens, model and view of the run.

    Read API as Trace's (see the module's docstring for what is differenced). `a` and `b` are kept:
    `baseline` is A, so a view can still name both runs.
    """

    is_difference = True

    def __init__(self, a: Trace, b: Trace) -> None:
        self.a, self.b = a, b
        self.baseline = a
        self.same_model = same_model(a, b)
        name = b.model.get("name", "?")
        self.model = dict(b.model, name=f"{name}{DIFF_SUFFIX}")  # figure titles say what is shown
        self.sampling, self.memory, self.prompt_tokens = b.sampling, None, b.prompt_tokens
        self.extra_manifest = {"difference_of": [a.model.get("name"), b.model.get("name")]}
        self.memory_records: dict = {}
        self._checked = 0  # steps whose tokens are known equal
        self._parted = False  # the runs read a different token there: no further step is shared
        self._cache: dict[str, tuple[int, np.ndarray]] = {}

    # -- the steps compared ------------------------------------------------------------------------
    def __len__(self) -> int:
        if not self._parted:  # grows with the runs; each step's tokens are checked once
            n = min(len(self.a), len(self.b))
            ids_a, ids_b = self.a.token_ids, self.b.token_ids
            while self._checked < n:
                if ids_a[self._checked] != ids_b[self._checked]:
                    self._parted = True
                    break
                self._checked += 1
        return self._checked

    @property
    def steps(self) -> int:
        return len(self)

    # B's token lists (longer than len() while B reads on: len() is what counts, as for a Trace)
    @property
    def token_ids(self) -> list[int]:
        return self.b.token_ids

    @property
    def token_text(self) -> list[str]:
        return self.b.token_text

    @property
    def token_bytes(self) -> list[bytes]:
        return self.b.token_bytes

    @property
    def generated(self) -> list[bool]:
        return self.b.generated

    @property
    def vocab(self) -> dict[int, str]:
        return self.b.vocab

    @property
    def architecture(self) -> str:
        return self.b.architecture

    @property
    def kind(self) -> str:
        return self.b.kind

    def token_label(self, step: int) -> str:
        return self.b.token_label(step)

    @property
    def token_labels(self) -> list[str]:
        return self.b.token_labels[: len(self)]

    def text(self) -> str:
        return self.b.text()

    def text_of(self, token_id: int) -> str | None:
        return self.b.text_of(token_id)

    def memory_record(self, entry_id: int):
        return None

    def manifest(self) -> dict:
        return {**self.b.manifest(), "model": self.model, **self.extra_manifest}

    # -- per-step columns ----------------------------------------------------------------------------
    def _differenced(self, key: str) -> bool:
        if key.endswith("_ids") or key in _UNALIGNED:
            return False
        if not (self.a.has(key) and self.b.has(key)):
            return False
        if not self.same_model and key not in PREDICTION_KEYS:
            return False
        return self.a.array(key).shape[1:] == self.b.array(key).shape[1:]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(k for k in self.b.column_names if self._differenced(k))

    def has(self, key: str) -> bool:
        if key == "attention":
            return self.attention_shape is not None and self.b.has("attention") and self.a.has("attention")
        return self._differenced(key)

    def array(self, key: str) -> np.ndarray:
        """B's column minus A's over the shared steps, float32 ([n, ...]); KeyError when the two runs
        have no meaningful difference of it. Rows are computed once (the last again: a value that
        comes one step late, target_logprob, is filled in then)."""
        if not self._differenced(key):
            raise KeyError(key)
        n = len(self)
        done, old = self._cache.get(key, (0, None))
        if done == n and old is not None:
            return old
        start = max(0, min(done, n) - 1)
        rows = self.b.array(key)[start:n].astype(np.float32) - self.a.array(key)[start:n].astype(np.float32)
        out = rows if old is None or start == 0 else np.concatenate([old[:start], rows])
        self._cache[key] = (n, out)
        return out

    # -- attention ------------------------------------------------------------------------------------
    @property
    def attention_shape(self) -> tuple[int, int] | None:
        if not self.same_model:
            return None
        shape_a, shape_b = self.a.attention_shape, self.b.attention_shape
        return shape_b if shape_a == shape_b else None

    def attention_rows_at(self, step: int) -> np.ndarray:
        """[L, A, step+1] float32: B's attention rows at `step` minus A's."""
        if not 0 <= step < len(self):
            raise IndexError(f"step {step} is not shared by the two runs ({len(self)} steps)")
        return self.b.attention_rows_at(step).astype(np.float32) - self.a.attention_rows_at(step).astype(
            np.float32
        )

    def attention_at(self, step: int) -> np.ndarray:
        return self.attention_rows_at(step)

    def attention_row(self, step: int, layer: int, head: int) -> np.ndarray:
        return self.attention_rows_at(step)[layer, head]

    def attention_matrix(
        self, layer: int, head: int, start: int = 0, stop: int | None = None, *, upto: int | None = None
    ) -> np.ndarray:
        if upto is not None:
            stop = upto if stop is None else min(stop, upto)
        n = len(self) if stop is None else max(0, min(stop, len(self)))
        return self.b.attention_matrix(layer, head, start, n) - self.a.attention_matrix(layer, head, start, n)

    def attention_tensor(self) -> np.ndarray:
        n = len(self)
        b = self.b.attention_tensor()[:, :, :n, :n].astype(np.float32)
        return b - self.a.attention_tensor()[:, :, :n, :n].astype(np.float32)

    def mean_attention_distance(self, upto: int | None = None) -> np.ndarray:
        """B's mean distance minus A's (the distance is linear in the rows: the same as the mean
        distance of the differenced rows)."""
        n = len(self) if upto is None else min(upto, len(self))
        return self.b.mean_attention_distance(n) - self.a.mean_attention_distance(n)

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for _n, array in self._cache.values())


class NamedRun:
    """One run of a comparison shown as itself under a name that says which it is ("name (A)"), so a
    figure of A says so: every read goes to the run, only `model`'s name differs."""

    def __init__(self, run: Trace, side: str = "A") -> None:
        self.run = run
        self.side = side
        self.model = dict(run.model, name=f"{run.model.get('name', '?')} ({side})")

    def __len__(self) -> int:
        return len(self.run)

    def __getattr__(self, name: str):
        return getattr(self.run, name)
