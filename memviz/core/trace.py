"""The Trace: the record of a run, one step per token. The single source of truth for every view.

Saved as a `.memviz` file (see DESIGN.md and the README): an `.npz` archive that opens without
pickle. Attention is held one of two ways (memviz.core.attention_store):

- format 2 (a transformer run whose rows can be rebuilt from q and k, the default): each step's
  queries [L, A, d] and new keys [L, A_kv, d], appended to `.npy` files on disk while the run goes
  (memviz.core.npy_spool, in the run's folder), saved as the `queries` and `keys` members, stored
  uncompressed so that opening a file memory-maps them (memviz.core.trace_zip). Rows are rebuilt
  on demand, exactly, from the manifest's `attention_layout`.
- format 1 (dense: GPT-Neo, mask:/context: interventions, `memviz trace --dense-attention`, old
  files): one row per step in RAM ([L, A, t+1], the lower triangle only), written as the dense
  [L, A, T, T] `attention` matrix.

While a run goes, every step is written to its folder (memviz.core.run_folder: each column a `.npy`
appended to, the tokens a line a step), so RAM does not grow with the run and a crash leaves the
run behind for `Trace.recover(folder)` (`memviz recover`); the folder goes with the trace.

With a memory, the records of the memories a run retrieved (what the memory panel shows) are saved
too (`memory_records`, 0-d JSON), so a figure never needs the store.

Views (panels, export, the app, benchmarks) read a Trace only through its read API (see `Trace`):
how the trace holds its data, attention above all, is its own business.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
import weakref
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from memviz import __version__
from memviz.backends.base import ModelInfo
from memviz.backends.dtypes import attention_dtype_for
from memviz.backends.hook_points import ATTENTION_ROW, LSTM_INTERNALS
from memviz.backends.qk_capture import ATTENTION_DISTANCE, ATTENTION_K, ATTENTION_Q
from memviz.core import run_folder, trace_check, trace_zip
from memviz.core.attention_store import AttentionLayout, DenseRows, QKStore
from memviz.core.columns import GrowableArray
from memviz.core.npy_spool import FrozenRows, NpySpool
from memviz.core.sliding import SlidingStore
from memviz.errors import MemvizError
from memviz.memory.store import MemoryRecord
from memviz.paths import new_run_folder, output_file

FORMAT_VERSION = 1  # what a trace with dense attention (or none) writes
FORMAT_QK = 2  # what a trace with queries and keys writes
QK_MEMBERS = ("queries", "keys")
# --slide (memviz.core.sliding): every window's q/k, its carried prefix first, and the windows' table
SLIDE_MEMBERS = ("segment_queries", "segment_keys")
KEPT_CANDIDATES = 20


@dataclass
class StepRecord:
    token_id: int
    token_text: str
    generated: bool
    topk_ids: np.ndarray  # [K] best first
    topk_probs: np.ndarray  # [K]
    internals: dict[str, np.ndarray] = field(default_factory=dict)
    # with a memory: memory_ids [k], memory_scores [k], lm_topk_ids/probs, knn_topk_ids/probs [K]
    memory: dict[str, np.ndarray] = field(default_factory=dict)
    token_bytes: bytes | None = None  # the token's exact bytes (None: the UTF-8 of token_text)


class Trace:
    """The record of a run. Built by `append` (one StepRecord a step), read through this API only:

    - `len(trace)` / `steps`: complete steps; `token_ids`, `token_text`, `generated` (lists, [T]);
      `model`, `sampling`, `memory`, `prompt_tokens`, `manifest()`: what the run was.
    - `has(key)`, `array(key)` ([T, ...] view of a per-step column: topk_ids/probs, gates, cell,
      hidden, memory_ids/scores, ...), `column_names`, `text_of(token_id)`.
    - Attention (transformers): `attention_shape` ((layers, heads) or None), `attention_rows_at(step)`
      ([L, A, step+1]), `attention_row(step, layer, head)` ([step+1]), `attention_matrix(layer, head,
      start=0, stop=None)` (queries start..stop-1 over keys 0..stop-1), `attention_tensor()` (the
      dense [L, A, T, T]) and `mean_attention_distance(upto)`: the same answers whether the trace
      holds dense rows or rebuilds them from q and k; `attention_storage` ("qk", "dense" or None),
      `attention_layout` (an AttentionLayout, q/k only), `nbytes` (RAM), `disk_nbytes` and
      `attention_files` (the .npy files a q/k run appends to), `spool_folder` / `spool_nbytes` (the
      run's folder, where every step goes as it is read), `queries_keys(step)` (a q/k step as
      recorded). With `has("attention_distance")`,
      `array("attention_distance")` [T, L, A] holds each head's expected distance back (t - key)
      under step t's row, recorded by the backend from the model's own weights.
    - Long-term memory: `memory_record(id)`, what the memory panel shows of a retrieved memory.
    - Per step (LM runs): `target_logprob` [T] (log p of the token that came next; NaN on the last
      step), `entropy` [T] (nats); with --logit-lens `lens_topk_ids/probs` [T, L, K] and
      `lens_target_prob` [T, L].
    - `baseline`: an optional companion run over the same tokens (the app's run before an
      intervention, for the compare panel); None by default, never saved, not part of the record.

    Everything else (fields with a leading underscore) may change with the storage.
    """

    LSTM_KEYS = LSTM_INTERNALS  # ("gates", "cell", "hidden"): internals kept as columns of the same name
    MEMORY_KEYS = (
        "memory_ids",
        "memory_scores",
        "lm_topk_ids",
        "lm_topk_probs",
        "knn_topk_ids",
        "knn_topk_probs",
    )

    def __init__(
        self,
        model: dict,
        sampling: dict | None = None,
        memory: dict | None = None,
        prompt_tokens: int = 0,
        attention_dtype=None,
        extra_manifest: dict | None = None,
        attention_layout: dict | AttentionLayout | None = None,
        attention_reason: str | None = None,
        query_dtype=None,
    ) -> None:
        self.model = dict(model)
        self.sampling = dict(
            sampling or {"strategy": "greedy", "temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": 0}
        )
        self.memory = memory
        self.prompt_tokens = prompt_tokens
        self.extra_manifest = dict(extra_manifest or {})
        self.baseline: Trace | None = None  # a companion run to compare with (see above); not saved
        self.token_ids: list[int] = []
        self.token_text: list[str] = []
        self.generated: list[bool] = []
        # Each token's exact bytes: a byte-level token may hold part of a character (memviz.core.token_text)
        self.token_bytes: list[bytes] = []
        self._columns: dict[str, GrowableArray] = {}
        self._attention_dtype = attention_dtype
        if isinstance(attention_layout, dict):
            attention_layout = AttentionLayout.from_manifest(attention_layout)
        self._layout: AttentionLayout | None = attention_layout  # q/k runs: how rows are rebuilt
        self._attention_reason = attention_reason  # dense runs of a transformer: why not q/k
        self._query_dtype = query_dtype  # q/k runs: the queries' dtype (None: as the backend gives them)
        self._attention: DenseRows | QKStore | None = None  # created by the first step's attention
        self._spool_dir: Path | None = None  # the run's folder while it goes on (removed with the trace)
        self._run: run_folder.RunWriter | None = None  # writes the run into it (memviz.core.run_folder)
        self._window_start: int | None = None  # --slide: the current window's first token (None: no slide)
        # Text of every token id that appears among the candidates: saved traces label them without a model.
        self.vocab: dict[int, str] = {}
        # Retrieved memories by id, as the store showed them when they were recalled (written by the
        # Session before the step that first retrieves them is appended).
        self.memory_records: dict[int, MemoryRecord] = {}

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def for_model(cls, info: ModelInfo, **kwargs) -> Trace:
        if info.kind == "transformer" and "attention_dtype" not in kwargs:
            kwargs["attention_dtype"] = attention_dtype_for(info)
        return cls(model=info.as_manifest(), **kwargs)

    @property
    def architecture(self) -> str:
        return self.model.get("architecture", "")

    @property
    def kind(self) -> str:
        """ "transformer" or "recurrent"; an old trace's from its architecture ("gpt2", "lstm")."""
        from memviz.backends.families import kind_of

        return self.model.get("kind") or kind_of(self.architecture, int(self.model.get("num_heads") or 0))

    def append(self, record: StepRecord) -> int:
        T = len(self)
        arrays = {"topk_ids": record.topk_ids, "topk_probs": record.topk_probs}
        arrays.update({k: record.internals[k] for k in self.LSTM_KEYS if k in record.internals})
        if ATTENTION_DISTANCE in record.internals:  # [L, A]: what the head-distance panel sums
            arrays[ATTENTION_DISTANCE] = record.internals[ATTENTION_DISTANCE]
        if self._window_start is not None:  # a copied step (resume) brings its own
            arrays["window_start"] = np.int64(self._window_start)
        arrays.update(record.memory)
        if self._window_start is None:
            arrays.pop("window_start", None)  # only a sliding run has the column
        data = record.token_text.encode("utf-8") if record.token_bytes is None else bytes(record.token_bytes)
        try:
            if self._run is None:
                self._start_run()
            for key, value in arrays.items():
                column = self._columns.get(key)
                if column is None:
                    dtype = np.int64 if key.endswith("_ids") else np.float32
                    path = self._run.column_path(key)
                    column = self._columns[key] = GrowableArray.spooled(path, np.shape(value), dtype)
                column.append(value)
            row = record.internals.get(ATTENTION_ROW)
            if row is not None:
                if self._attention is None:
                    self._attention = DenseRows(self._attention_dtype)
                self._attention.append(row)
            q = record.internals.get(ATTENTION_Q)
            if q is not None:
                self._qk_store(q, record.internals[ATTENTION_K]).append(q, record.internals[ATTENTION_K])
            self.vocab.setdefault(int(record.token_id), record.token_text)
            self._run.commit(self, T, record.token_id, record.generated, record.token_text, data)
        except OSError as exc:  # a full disk: this step is undone, the steps before it stay
            self._roll_back(T)
            if self._run is None or T == 0:  # nothing to keep: the folder goes as usual
                where = self._spool_dir or "the runs folder"
                raise MemvizError(f"{where}: cannot write the run ({exc.strerror or exc})") from None
            self._keep_folder.detach()  # what was read stays on disk too, for `memviz recover`
            raise MemvizError(
                f"cannot write the run ({exc.strerror or exc}): it stops at {T} steps; they stay "
                f"in {self._spool_dir} (memviz recover)"
            ) from None
        self.token_bytes.append(data)
        self.token_text.append(record.token_text)
        self.generated.append(bool(record.generated))
        self.token_ids.append(int(record.token_id))  # last: len(trace) counts complete steps only
        return len(self.token_ids) - 1

    def _start_run(self) -> None:
        """The run's folder (memviz.core.run_folder): every step goes to disk as it is appended, so
        RAM does not grow with the run and a crash leaves it to `Trace.recover`. A trace that held
        steps before (loaded, then grown) writes those first."""
        writer = run_folder.RunWriter(self._spool_folder())
        for key, column in self._columns.items():
            column.spool_to(writer.column_path(key))
        writer.write_steps(self, len(self))
        writer.write_manifest(self.manifest())
        self._run = writer

    def _spool_folder(self) -> Path:
        if self._spool_dir is None:
            self._spool_dir = new_run_folder()
            self._keep_folder = weakref.finalize(self, run_folder.remove, self._spool_dir)  # a clean end
        return self._spool_dir

    def _roll_back(self, steps: int) -> None:
        """Undo a step that could not be written whole: every column back to `steps` rows."""
        for column in self._columns.values():
            column.truncate(steps)
        store = self._attention
        if isinstance(store, QKStore) and isinstance(store.queries, NpySpool):
            store.queries.truncate(steps)
            store.keys.truncate(steps)
        elif isinstance(store, DenseRows):
            del store.rows[steps:]
        elif isinstance(store, SlidingStore) and isinstance(store.queries, NpySpool):
            store.truncate(steps)  # with a window begun at the undone step
        if self._window_start is not None:
            self._window_start = self.window_start(steps - 1) if steps else 0

    def run_file_folder(self) -> Path:
        """The run's folder (made now if need be), for files that go with the run but are not part
        of the trace (the Session's kNN keys); removed with the trace like the rest."""
        return self._spool_folder()

    @property
    def spool_folder(self) -> Path | None:
        """The folder this run is written to as it goes (None: not grown since it was made or loaded)."""
        return self._spool_dir

    @property
    def spool_nbytes(self) -> int:
        """Bytes of the run's folder on disk (columns, q/k, tokens; 0 without one)."""
        if self._spool_dir is None:
            return 0
        return sum(p.stat().st_blocks * 512 for p in self._spool_dir.iterdir() if p.is_file())

    def _qk_store(self, q: np.ndarray, k: np.ndarray) -> QKStore:
        """The q/k store, spooling to disk: created at the first step, or (a loaded trace that goes
        on growing) its saved rows copied into spool files first."""
        store = self._attention
        if isinstance(store, (QKStore, SlidingStore)) and isinstance(store.queries, NpySpool):
            return store
        if self._window_start is not None:
            return self._sliding_store(np.shape(q), np.shape(k), np.asarray(q).dtype)
        if self._layout is None:
            raise MemvizError("a step with queries and keys in a trace made without an attention_layout")
        dtype = np.dtype(self._query_dtype or np.asarray(q).dtype)
        if self._spool_dir is None:
            self._spool_dir = Path(tempfile.mkdtemp(prefix="memviz-trace-"))
            weakref.finalize(self, shutil.rmtree, str(self._spool_dir), True)
        queries = NpySpool(self._spool_dir / "queries.npy", np.shape(q), dtype)
        keys = NpySpool(self._spool_dir / "keys.npy", np.shape(k), np.float32)  # keys: always float32
        if isinstance(store, QKStore):  # a loaded trace: what it holds first
            for target, source in ((queries, store.queries), (keys, store.keys)):
                target.extend(source.view()[: len(self)])
        context = self.model.get("context_size")  # the window a live run reaches (None: unknown)
        capacity = (
            context if isinstance(context, int) and not isinstance(context, bool) and context > 0 else None
        )
        self._attention = QKStore(self._layout, queries, keys, capacity=capacity)
        return self._attention

    # -- windows that slide (memviz.core.sliding) ---------------------------------------------
    def enable_sliding(self, window: int, stride: int) -> None:
        """This run reads past its window in windows that slide (the Session's --slide): it records
        each step's `window_start` and, with q/k, each window's attention as its own segment."""
        self.extra_manifest["slide"] = {"window": int(window), "stride": int(stride)}
        self._window_start = 0
        self._columns.setdefault("window_start", GrowableArray((), np.int64))

    def start_window(self, step: int, window_start: int, queries=None, keys=None) -> None:
        """A new window begins at step `step` (before it is appended), seeing tokens from
        `window_start` on; `queries`/`keys` [step - window_start, ...]: their re-encoded q/k (q/k runs)."""
        if self._window_start is None:
            raise MemvizError("a window starts in a trace made without --slide")
        if queries is not None:
            self._sliding_store(np.shape(queries)[1:], np.shape(keys)[1:], np.asarray(queries).dtype)
            self._attention.start_window(step, window_start, queries, keys)
        self._window_start = int(window_start)

    def _sliding_store(self, q_shape, k_shape, q_dtype) -> SlidingStore:
        store = self._attention
        if isinstance(store, SlidingStore) and isinstance(store.queries, NpySpool):
            return store
        if self._layout is None:
            raise MemvizError("a step with queries and keys in a trace made without an attention_layout")
        if self._spool_dir is None:
            self._spool_dir = Path(tempfile.mkdtemp(prefix="memviz-trace-"))
            weakref.finalize(self, shutil.rmtree, str(self._spool_dir), True)
        dtype = np.dtype(self._query_dtype or q_dtype)
        queries = NpySpool(self._spool_dir / "segment_queries.npy", tuple(q_shape), dtype)
        keys = NpySpool(self._spool_dir / "segment_keys.npy", tuple(k_shape), np.float32)
        segments, steps = None, 0
        if isinstance(store, SlidingStore):  # a loaded trace that goes on growing: what it holds first
            n = store.rows_held
            queries.extend(store.queries.view()[:n])
            keys.extend(store.keys.view()[:n])
            segments, steps = store.segments, len(store)
        self._attention = SlidingStore(self._layout, queries, keys, segments, steps)
        return self._attention

    def window_start(self, step: int) -> int:
        """The first token position step `step` sees: 0 without --slide, else its window's start."""
        if "window_start" not in self._columns:
            return 0
        return int(self.array("window_start")[step])

    @property
    def window_boundaries(self) -> tuple[int, ...]:
        """The steps where a new window begins (--slide); () for a run that never slid."""
        if "window_start" not in self._columns:
            return ()
        starts = self.array("window_start")
        return tuple(int(t) + 1 for t in np.flatnonzero(np.diff(starts)))

    def fill(self, key: str, step: int, value) -> None:
        """Write a value that comes one step late into step `step`'s row of a column: target_logprob
        and lens_target_prob need the token that came next (the Session fills them)."""
        self._columns[key].write(step, value)

    def add_memory_records(self, records: Iterable[MemoryRecord]) -> None:
        """Keep what the store holds of memories this run retrieved (the first record of an id wins)."""
        for record in records:
            self.memory_records.setdefault(int(record.id), record)

    # -- reading ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def steps(self) -> int:
        """Complete steps recorded: len(trace)."""
        return len(self.token_ids)

    @property
    def column_names(self) -> tuple[str, ...]:
        """The per-step columns of this run, the keys `array` takes."""
        return tuple(self._columns)

    def array(self, key: str) -> np.ndarray:
        """A per-step column ([T, ...]) as a zero-copy view; KeyError when this run has none."""
        return self._columns[key].view()[: len(self)]

    def token_label(self, step: int) -> str:
        """Step `step`'s token as labels show it: partial characters as `‹C3›` (see token_text)."""
        from memviz.core.token_text import token_display

        return token_display(self.token_bytes[step])

    @property
    def token_labels(self) -> list[str]:
        """`token_label` of every step."""
        from memviz.core.token_text import token_display

        return [token_display(b) for b in self.token_bytes[: len(self)]]

    def text(self) -> str:
        """The text the run's tokens spell, rebuilt from their bytes (exact, characters split
        across tokens included)."""
        from memviz.core.token_text import join_text

        pieces = self.token_bytes[: len(self)]
        start = [int(i) for i in self.model.get("start_ids") or ()]  # BOS: the model's, not the text's
        if start and [int(i) for i in self.token_ids[: len(start)]] == start:
            pieces = pieces[len(start) :]
        if self.model.get("tokenizer") == "word":  # a word tokenizer drops the spaces: put one back
            return " ".join(join_text([piece]) for piece in pieces)
        return join_text(pieces)

    def text_of(self, token_id: int) -> str | None:
        """A candidate token's text (None if this trace never saw it)."""
        return self.vocab.get(int(token_id))

    def has(self, key: str) -> bool:
        if key == "attention":
            return self._attention is not None and len(self._attention) > 0
        return key in self._columns

    @property
    def attention_storage(self) -> str | None:
        """ "qk" (rows rebuilt from queries and keys), "dense" (rows kept), None (no attention)."""
        if self._attention is not None:
            return self._attention.kind
        if self._layout is not None:
            return "qk"
        return "dense" if self.kind == "transformer" else None

    @property
    def attention_layout(self) -> AttentionLayout | None:
        return self._layout

    @property
    def attention_shape(self) -> tuple[int, int] | None:
        """(layers, heads) of this run's attention; None for a model without attention. Before the
        first step, a transformer run's shape comes from its manifest."""
        if self._attention is not None and len(self._attention):
            return self._attention.shape
        if self.kind == "transformer":
            return int(self.model.get("num_layers") or 0), int(self.model.get("num_heads") or 0)
        return None

    def _check_step(self, step: int) -> None:
        if not 0 <= step < len(self) or self._attention is None:
            raise IndexError(f"step {step} is not in this trace ({len(self)} steps)")

    def attention_rows_at(self, step: int) -> np.ndarray:
        """Step `step`'s attention rows for every layer and head: [L, A, step+1] (dense: in the
        trace's attention dtype; rebuilt from q/k: float32). Do not write into it."""
        self._check_step(step)
        return self._attention.rows_at(step)

    def attention_at(self, step: int) -> np.ndarray:
        """The old name of `attention_rows_at`."""
        return self.attention_rows_at(step)

    def attention_row(self, step: int, layer: int, head: int) -> np.ndarray:
        """One head's attention of the query at `step` over keys 0..step: [step+1]."""
        self._check_step(step)
        return self._attention.row(step, layer, head)

    def attention_matrix(
        self, layer: int, head: int, start: int = 0, stop: int | None = None, *, upto: int | None = None
    ) -> np.ndarray:
        """Queries start..stop-1 of one head over keys 0..stop-1: float32 [stop - start, stop], zero
        above the diagonal (start = 0: the square query x key matrix). `stop` defaults to len(trace)
        and is clipped to it; `upto` is its old name.

        Built afresh at each call: a view that redraws while the run grows keeps its own copy and asks
        for the new rows only (see memviz.panels.attention_cache).
        """
        if upto is not None:
            stop = upto if stop is None else min(stop, upto)
        n = len(self) if stop is None else max(0, min(stop, len(self)))
        start = max(0, min(start, n))
        if self._attention is None:
            return np.zeros((n - start, n), dtype=np.float32)
        return self._attention.matrix(layer, head, start, n)

    def queries_keys(self, step: int) -> tuple[np.ndarray, np.ndarray] | None:
        """A q/k trace's step as recorded: (queries [L, A, d], keys [L, A_kv, d]); None for dense
        attention (or none). Appending them (internals `attention_q`, `attention_k`) to a trace of
        the same layout copies the step exactly."""
        self._check_step(step)
        store = self._attention
        if isinstance(store, SlidingStore):
            return store.step_qk(step)
        if not isinstance(store, QKStore):
            return None
        return store.queries.view()[step], store.keys.view()[step]

    def attention_tensor(self) -> np.ndarray:
        """The dense [L, A, T, T] attention (format 1's `attention`; rebuilt for a q/k trace)."""
        return self._attention.tensor(len(self))

    def mean_attention_distance(self, upto: int | None = None) -> np.ndarray:
        """Per layer and head: the mean over queries 0..upto-1 of the expected distance back (t - key)."""
        n = len(self) if upto is None else min(upto, len(self))
        if n == 0:
            return np.zeros((0, 0))
        if ATTENTION_DISTANCE in self._columns:  # recorded while the run went: no row to rebuild
            return self.array(ATTENTION_DISTANCE)[:n].astype(np.float64).sum(axis=0) / n
        total = None
        for t in range(n):
            row = self._attention.rows_at(t).astype(np.float32)
            distance = row @ (t - np.arange(t + 1, dtype=np.float32))  # [L, A]
            total = distance if total is None else total + distance
        return total / n

    def memory_record(self, entry_id: int) -> MemoryRecord | None:
        """What this run saved of a retrieved memory (next token, its text, document, position,
        snippet with the token's span); None for -1, an unknown id, or a trace saved without them."""
        return self.memory_records.get(int(entry_id))

    @property
    def nbytes(self) -> int:
        """Bytes this trace holds in RAM (a q/k trace's queries and keys are on disk: `disk_nbytes`)."""
        held = self._attention.ram_nbytes if self._attention is not None else 0
        return sum(c.nbytes for c in self._columns.values()) + held

    @property
    def attention_files(self) -> tuple[Path, ...]:
        """The `.npy` files a q/k run appends to while it goes (each a valid .npy of the steps so far,
        crash or not); () when the trace holds none (dense, or loaded and not grown since)."""
        store = self._attention
        if isinstance(store, (QKStore, SlidingStore)) and isinstance(store.queries, NpySpool):
            return store.queries.path, store.keys.path
        return ()

    @property
    def disk_nbytes(self) -> int:
        """Bytes of queries and keys on disk (spool files or the memory-mapped trace file)."""
        return self._attention.disk_nbytes if self._attention is not None else 0

    def manifest(self) -> dict:
        storage = self.attention_storage
        attention: dict = {}
        if storage is not None:
            attention["attention_storage"] = storage
        if storage == "qk":
            attention["attention_layout"] = self._layout.as_manifest()
        elif storage == "dense" and self._attention_reason:
            attention["attention_storage_reason"] = self._attention_reason
        return {
            "format_version": FORMAT_QK if storage == "qk" else FORMAT_VERSION,
            "memviz_version": __version__,
            "model": self.model,
            "sampling": self.sampling,
            "memory": self.memory,
            "prompt_tokens": self.prompt_tokens,
            **self.extra_manifest,
            **attention,
        }

    # -- files ------------------------------------------------------------------------------
    def _saved_manifest(self) -> dict:
        """The manifest as a file holds it: a run stopped part-way through its prompt read only
        len(trace) of the prompt's tokens (a file saying more would not load again)."""
        manifest = self.manifest()
        manifest["prompt_tokens"] = min(int(self.prompt_tokens), len(self))
        return manifest

    def to_arrays(self) -> dict[str, np.ndarray]:
        T = len(self)
        arrays: dict[str, np.ndarray] = {
            "manifest": np.array(json.dumps(self._saved_manifest())),
            "token_ids": np.array(self.token_ids, dtype=np.int64),
            "token_text": np.array(self.token_text, dtype=str) if T else np.zeros(0, dtype="<U1"),
            "generated": np.array(self.generated, dtype=bool),
        }
        data = self.token_bytes[:T]
        arrays["token_bytes"] = np.frombuffer(b"".join(data), dtype=np.uint8).copy()
        arrays["token_byte_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in data])]).astype(
            np.int64
        )
        if any(text.endswith("\0") for text in self.token_text):
            # numpy's str arrays drop trailing NULs: keep each text's length so they can be restored.
            arrays["token_text_length"] = np.array([len(text) for text in self.token_text], dtype=np.int64)
        for key, column in self._columns.items():
            arrays[key] = column.view()[:T]
        for key, dtype in (("topk_ids", np.int64), ("topk_probs", np.float32)):
            arrays.setdefault(key, np.zeros((T, KEPT_CANDIDATES), dtype=dtype))  # an empty trace: [0, K]
        if isinstance(self._attention, DenseRows) and len(self._attention):
            arrays["attention"] = self.attention_tensor()
        elif isinstance(self._attention, QKStore):
            arrays["queries"] = self._attention.queries.view()[:T]
            arrays["keys"] = self._attention.keys.view()[:T]
        elif isinstance(self._attention, SlidingStore):  # the windows' table first: rows for T steps
            segments, rows = self._attention.table(T)
            arrays["segments"] = segments
            arrays["segment_queries"] = self._attention.queries.view()[:rows]
            arrays["segment_keys"] = self._attention.keys.view()[:rows]
        if self.memory_records:
            # a copy first (one C call): the worker may add records while the window saves
            arrays["memory_records"] = np.array(_records_json(dict(self.memory_records)))
        if self.vocab:
            ids = sorted(self.vocab)
            arrays["vocab_ids"] = np.array(ids, dtype=np.int64)
            arrays["vocab_text"] = np.array([self.vocab[i] for i in ids], dtype=str)
        return arrays

    def save(self, path: str | os.PathLike) -> Path:
        """Write exactly at `path`, atomically: a crash never leaves half a file behind."""
        path = output_file(path)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            # os.open with 0o666 honours the umask, so the trace gets the permissions of any new file.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as handle:
                if self.attention_storage == "qk":  # q/k stored uncompressed: memory-mapped on opening
                    trace_zip.write_npz(
                        handle, self.to_arrays(), stored=frozenset(QK_MEMBERS + SLIDE_MEMBERS)
                    )
                else:
                    np.savez_compressed(handle, **self.to_arrays())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise MemvizError(f"{path}: cannot write ({exc.strerror})") from None
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trace:
        path = Path(path)
        if not path.is_file():
            raise MemvizError(f"{path}: no such trace file")
        if not zipfile.is_zipfile(path):  # else numpy takes any other file for a pickle
            raise MemvizError(f"{path}: not a memviz trace (not an npz archive)")
        # Headers first (memviz.core.trace_check): a declared shape is checked before its data is read.
        headers = trace_check.read_headers(path, str(path))
        if "manifest" not in headers:
            raise MemvizError(f"{path}: not a memviz trace (an npz archive with no manifest)")
        trace_check.check_present(headers, str(path))
        try:
            with np.load(path, allow_pickle=False) as archive:
                manifest = trace_check.parse_manifest(archive["manifest"], str(path))
                trace_check.check_shapes(headers, manifest, str(path))
                mapped = {
                    key: trace_zip.memmap_member(path, key)
                    for key in QK_MEMBERS + SLIDE_MEMBERS
                    if key in headers
                }
                arrays = {
                    key: mapped[key] if mapped.get(key) is not None else archive[key] for key in archive.files
                }
        except ValueError as exc:
            if "pickle" in str(exc).lower():
                raise MemvizError(f"{path}: holds pickled objects; memviz never unpickles files") from None
            raise MemvizError(f"{path}: not a .memviz trace ({exc})") from None
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise MemvizError(f"{path}: not a .memviz trace (not an npz archive: {exc})") from None
        return cls.from_arrays(arrays, where=str(path))

    @classmethod
    def recover(cls, folder: str | os.PathLike) -> Trace:
        """The trace a run's folder holds (memviz.core.run_folder), crashed or not: its complete
        steps (a step cut short is dropped), checked as `load` checks a file. Its columns memory-map
        the folder's files: keep the folder until the trace is saved."""
        return cls.from_arrays(run_folder.read_run(folder), where=str(folder))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], where: str = "trace") -> Trace:
        trace_check.check_present(arrays, where)
        manifest = trace_check.parse_manifest(np.asarray(arrays["manifest"]), where)
        trace_check.check_shapes(
            {k: (np.shape(v), np.asarray(v).dtype) for k, v in arrays.items()}, manifest, where
        )
        trace_check.check_values(arrays, manifest, where)
        known = {
            "format_version",
            "memviz_version",
            "model",
            "sampling",
            "memory",
            "prompt_tokens",
            "attention_storage",
            "attention_layout",
            "attention_storage_reason",
        }
        layout = None
        if manifest.get("attention_storage") == "qk":
            layout = AttentionLayout.from_manifest(manifest.get("attention_layout"), where)
        reason = manifest.get("attention_storage_reason")
        trace = cls(
            model=manifest.get("model") or {},
            sampling=manifest.get("sampling"),
            memory=manifest.get("memory"),
            prompt_tokens=int(manifest.get("prompt_tokens", 0)),
            extra_manifest={k: v for k, v in manifest.items() if k not in known},
            attention_layout=layout,
            attention_reason=reason if isinstance(reason, str) else None,
        )
        T = len(arrays["token_ids"])
        if len(arrays["token_text"]) != T or len(arrays["generated"]) != T:
            raise MemvizError(f"{where}: token arrays have different lengths")
        skip = {
            "manifest",
            "token_ids",
            "token_text",
            "token_text_length",
            "generated",
            "attention",
            "vocab_ids",
            "vocab_text",
            "memory_records",
            "token_bytes",
            "token_byte_offsets",
            *QK_MEMBERS,
            *SLIDE_MEMBERS,
            "segments",
        }
        for key, value in arrays.items():
            if key in skip or value.ndim == 0 or (T == 0 and len(value) == 0):
                continue
            if len(value) != T:
                raise MemvizError(f"{where}: '{key}' has {len(value)} steps, expected {T}")
            trace._columns[key] = GrowableArray.from_array(value)
        if "attention" in arrays:
            attention = arrays["attention"]
            if attention.ndim != 4 or attention.shape[2:] != (T, T):
                raise MemvizError(
                    f"{where}: attention has shape {attention.shape}, expected [L, A, {T}, {T}]"
                )
            trace._attention_dtype = attention.dtype
            trace._attention = DenseRows.from_tensor(attention)
        if layout is not None and "segments" in arrays:  # --slide: per-window segments
            queries, keys = arrays["segment_queries"], arrays["segment_keys"]
            trace._query_dtype = queries.dtype
            trace._attention = SlidingStore(
                layout, FrozenRows(queries), FrozenRows(keys), arrays["segments"], steps=T
            )
        elif layout is not None:
            queries, keys = arrays["queries"], arrays["keys"]
            trace._query_dtype = queries.dtype
            trace._attention = QKStore(layout, FrozenRows(queries), FrozenRows(keys))
        if "window_start" in trace._columns:  # a sliding trace that goes on growing
            trace._window_start = int(trace._columns["window_start"].view()[-1]) if T else 0
        if "memory_records" in arrays:  # traces saved before it was recorded have none: ids and scores only
            trace.memory_records = _records_from_json(arrays["memory_records"], where)
        trace.token_ids = [int(x) for x in arrays["token_ids"]]
        trace.token_text = [str(x) for x in arrays["token_text"]]
        if "token_text_length" in arrays and len(arrays["token_text_length"]) == T:
            lengths = arrays["token_text_length"]
            trace.token_text = [
                text.ljust(int(n), "\0") for text, n in zip(trace.token_text, lengths, strict=True)
            ]
        trace.generated = [bool(x) for x in arrays["generated"]]
        if "token_bytes" in arrays:  # checked: offsets rise from 0 to len(token_bytes)
            raw, offsets = arrays["token_bytes"].tobytes(), arrays["token_byte_offsets"]
            trace.token_bytes = [raw[int(a) : int(b)] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        else:  # format 1 files from before token_bytes
            trace.token_bytes = [text.encode("utf-8") for text in trace.token_text]
        if (
            "vocab_ids" in arrays
            and "vocab_text" in arrays
            and len(arrays["vocab_ids"]) == len(arrays["vocab_text"])
        ):
            trace.vocab = {
                int(i): str(t) for i, t in zip(arrays["vocab_ids"], arrays["vocab_text"], strict=True)
            }
        for token_id, text in zip(
            trace.token_ids, trace.token_text, strict=True
        ):  # traces saved without vocab
            trace.vocab.setdefault(token_id, text)
        return trace


# -- memory records in the file: one 0-d JSON string, {"<id>": {field: value}} -----------------------
def _records_json(records: dict[int, MemoryRecord]) -> str:
    return json.dumps(
        {str(i): {k: v for k, v in asdict(r).items() if k != "id"} for i, r in sorted(records.items())}
    )


def _records_from_json(value: np.ndarray, where: str) -> dict[int, MemoryRecord]:
    try:
        raw = json.loads(str(value[()]))
        return {
            int(i): MemoryRecord(
                id=int(i),
                next_token=int(r["next_token"]),
                token_text=str(r["token_text"]),
                document_id=int(r["document_id"]),
                document_name=str(r["document_name"]),
                position=int(r["position"]),
                snippet=str(r["snippet"]),
                highlight=(int(r["highlight"][0]), int(r["highlight"][1])),
            )
            for i, r in raw.items()
        }
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise MemvizError(f"{where}: broken memory_records") from None
