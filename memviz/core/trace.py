"""The Trace: the record of a run, one step per token. The single source of truth for every view.

Saved as a `.memviz` file (format 1, see DESIGN.md): an `.npz` archive that opens without pickle.
GPT-2 attention is held in RAM as one row per step ([L, A, t+1], the lower triangle only) and
written as the dense [L, A, T, T] matrix the format specifies.
"""

from __future__ import annotations

import json
import os
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memviz import __version__
from memviz.backends.base import ModelInfo
from memviz.backends.dtypes import attention_dtype_for
from memviz.core.columns import GrowableArray
from memviz.errors import MemvizError
from memviz.paths import output_file

FORMAT_VERSION = 1
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


class Trace:
    LSTM_KEYS = ("gates", "cell", "hidden")
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
    ) -> None:
        self.model = dict(model)
        self.sampling = dict(
            sampling or {"strategy": "greedy", "temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": 0}
        )
        self.memory = memory
        self.prompt_tokens = prompt_tokens
        self.extra_manifest = dict(extra_manifest or {})
        self.token_ids: list[int] = []
        self.token_text: list[str] = []
        self.generated: list[bool] = []
        self.columns: dict[str, GrowableArray] = {}
        self.attention_rows: list[np.ndarray] = []  # GPT-2: per step [L, A, t+1]
        self._attention_dtype = attention_dtype
        # Text of every token id that appears among the candidates: saved traces label them without a model.
        self.vocab: dict[int, str] = {}
        self._matrix_cache: dict[tuple[int, int], tuple[np.ndarray, int]] = {}  # (matrix, rows filled)

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def for_model(cls, info: ModelInfo, **kwargs) -> Trace:
        if info.architecture == "gpt2" and "attention_dtype" not in kwargs:
            kwargs["attention_dtype"] = attention_dtype_for(info)
        return cls(model=info.as_manifest(), **kwargs)

    @property
    def architecture(self) -> str:
        return self.model.get("architecture", "")

    def append(self, record: StepRecord) -> int:
        arrays = {"topk_ids": record.topk_ids, "topk_probs": record.topk_probs}
        arrays.update({k: record.internals[k] for k in self.LSTM_KEYS if k in record.internals})
        arrays.update(record.memory)
        for key, value in arrays.items():
            column = self.columns.get(key)
            if column is None:
                dtype = np.int64 if key.endswith("_ids") else np.float32
                column = self.columns[key] = GrowableArray(np.shape(value), dtype)
            column.append(value)
        row = record.internals.get("attention_row")
        if row is not None:
            self.attention_rows.append(np.asarray(row, dtype=self._attention_dtype or np.float32))
        self.vocab.setdefault(int(record.token_id), record.token_text)
        self.token_text.append(record.token_text)
        self.generated.append(bool(record.generated))
        self.token_ids.append(int(record.token_id))  # last: len(trace) counts complete steps only
        return len(self.token_ids) - 1

    # -- reading ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.token_ids)

    def array(self, key: str) -> np.ndarray:
        """A per-step column ([T, ...]) as a zero-copy view; KeyError when this run has none."""
        return self.columns[key].view()[: len(self)]

    def text_of(self, token_id: int) -> str | None:
        """A candidate token's text (None if this trace never saw it)."""
        return self.vocab.get(int(token_id))

    def has(self, key: str) -> bool:
        if key == "attention":
            return bool(self.attention_rows)
        return key in self.columns

    def attention_at(self, t: int) -> np.ndarray:
        """Step t's attention rows for every layer and head: [L, A, t+1]."""
        return self.attention_rows[t]

    def attention_matrix(self, layer: int, head: int, upto: int | None = None) -> np.ndarray:
        """Query x key attention of one head over the first `upto` steps: [T, T], zero above the diagonal.

        Cached per head with room to grow (capacity doubles), so a new step only writes its own row:
        re-allocating and copying the whole T x T matrix each step cost milliseconds at T = 1024.
        """
        n = len(self) if upto is None else min(upto, len(self))
        matrix, filled = self._matrix_cache.get((layer, head), (None, 0))
        if matrix is None or filled < n:
            if matrix is None or len(matrix) < n:
                capacity = 1 << max(n - 1, 63).bit_length()  # a power of two: few regrowths in a long run
                grown = np.zeros((capacity, capacity), dtype=np.float32)
                if matrix is not None:
                    grown[:filled, :filled] = matrix[:filled, :filled]
                matrix = grown
            for t in range(filled, n):
                matrix[t, : t + 1] = self.attention_rows[t][layer, head]
            filled = n
            self._matrix_cache[(layer, head)] = (matrix, filled)
        return matrix[:n, :n]

    def attention_tensor(self) -> np.ndarray:
        """The format's dense [L, A, T, T] attention."""
        T = len(self)
        L, A = self.attention_rows[0].shape[:2]
        dense = np.zeros((L, A, T, T), dtype=self.attention_rows[0].dtype)
        for t, row in enumerate(self.attention_rows[:T]):
            dense[:, :, t, : t + 1] = row
        return dense

    def mean_attention_distance(self, upto: int | None = None) -> np.ndarray:
        """Per layer and head: the mean over queries of the expected distance back (t - key)."""
        n = len(self) if upto is None else min(upto, len(self))
        if n == 0:
            return np.zeros((0, 0))
        total = None
        for t in range(n):
            row = self.attention_rows[t].astype(np.float32)
            distance = row @ (t - np.arange(t + 1, dtype=np.float32))  # [L, A]
            total = distance if total is None else total + distance
        return total / n

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.columns.values()) + sum(r.nbytes for r in self.attention_rows)

    def manifest(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "memviz_version": __version__,
            "model": self.model,
            "sampling": self.sampling,
            "memory": self.memory,
            "prompt_tokens": self.prompt_tokens,
            **self.extra_manifest,
        }

    # -- files ------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        T = len(self)
        arrays: dict[str, np.ndarray] = {
            "manifest": np.array(json.dumps(self.manifest())),
            "token_ids": np.array(self.token_ids, dtype=np.int64),
            "token_text": np.array(self.token_text, dtype=str) if T else np.zeros(0, dtype="<U1"),
            "generated": np.array(self.generated, dtype=bool),
        }
        if any(text.endswith("\0") for text in self.token_text):
            # numpy's str arrays drop trailing NULs: keep each text's length so they can be restored.
            arrays["token_text_length"] = np.array([len(text) for text in self.token_text], dtype=np.int64)
        for key, column in self.columns.items():
            arrays[key] = column.view()[:T]
        for key, dtype in (("topk_ids", np.int64), ("topk_probs", np.float32)):
            arrays.setdefault(key, np.zeros((T, KEPT_CANDIDATES), dtype=dtype))  # an empty trace: [0, K]
        if self.attention_rows:
            arrays["attention"] = self.attention_tensor()
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
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except ValueError as exc:
            if "pickle" in str(exc).lower():
                raise MemvizError(f"{path}: holds pickled objects; memviz never unpickles files") from None
            raise MemvizError(f"{path}: not a .memviz trace ({exc})") from None
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise MemvizError(f"{path}: not a .memviz trace (not an npz archive: {exc})") from None
        return cls.from_arrays(arrays, where=str(path))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], where: str = "trace") -> Trace:
        for key in ("manifest", "token_ids", "token_text", "generated", "topk_ids", "topk_probs"):
            if key not in arrays:
                raise MemvizError(f"{where}: not a .memviz trace (missing '{key}')")
        try:
            manifest = json.loads(str(arrays["manifest"][()]))
        except ValueError:
            raise MemvizError(f"{where}: broken manifest") from None
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise MemvizError(f"{where}: trace format {version!r}; this memviz reads format {FORMAT_VERSION}")
        known = {"format_version", "memviz_version", "model", "sampling", "memory", "prompt_tokens"}
        trace = cls(
            model=manifest.get("model", {}),
            sampling=manifest.get("sampling"),
            memory=manifest.get("memory"),
            prompt_tokens=int(manifest.get("prompt_tokens", 0)),
            extra_manifest={k: v for k, v in manifest.items() if k not in known},
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
        }
        for key, value in arrays.items():
            if key in skip or value.ndim == 0 or (T == 0 and len(value) == 0):
                continue
            if len(value) != T:
                raise MemvizError(f"{where}: '{key}' has {len(value)} steps, expected {T}")
            trace.columns[key] = GrowableArray.from_array(value)
        if "attention" in arrays:
            attention = arrays["attention"]
            if attention.ndim != 4 or attention.shape[2:] != (T, T):
                raise MemvizError(
                    f"{where}: attention has shape {attention.shape}, expected [L, A, {T}, {T}]"
                )
            trace._attention_dtype = attention.dtype
            trace.attention_rows = [np.ascontiguousarray(attention[:, :, t, : t + 1]) for t in range(T)]
        trace.token_ids = [int(x) for x in arrays["token_ids"]]
        trace.token_text = [str(x) for x in arrays["token_text"]]
        if "token_text_length" in arrays and len(arrays["token_text_length"]) == T:
            lengths = arrays["token_text_length"]
            trace.token_text = [
                text.ljust(int(n), "\0") for text, n in zip(trace.token_text, lengths, strict=True)
            ]
        trace.generated = [bool(x) for x in arrays["generated"]]
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
