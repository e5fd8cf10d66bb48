"""A run's folder on disk, written as the run goes: what `Trace.recover` rebuilds a trace from.

A Trace that is being built (memviz.core.trace) keeps, in a private folder under the user's cache
(memviz.paths.runs_folder), everything a trace file holds:

- `col-<key>.npy`: each per-step column (memviz.core.npy_spool: a valid .npy after every append);
  `queries.npy` / `keys.npy`: a q/k transformer run's attention;
- `tokens.jsonl`: one line a step, `[token_id, generated (0/1), token_text, token_bytes as hex]`,
  written after the step's columns: a step is complete when its line is (a cut last line is a step
  that was not finished, and is dropped);
- `vocab.jsonl` (`[id, text]` lines) and `memory_records.jsonl` (`{"id", ...}` lines): appended as
  they grow; `manifest.json` (`{"memviz_run": 1, "pid", "started", "manifest"}`): replaced
  atomically at the first step and, when it changed, every MANIFEST_EVERY steps.

Writes go straight to the OS (no buffer in the process), so a crash, even a SIGKILL, leaves every
complete step. A clean end (the trace collected, the process exiting) removes the folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import weakref
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from memviz.core.npy_spool import _DESCRIPTORS, _KEYS, read_spool
from memviz.errors import MemvizError

RUN_FORMAT = 1
MANIFEST_EVERY = 16  # steps between checks of the manifest (it changes rarely: sampling, prompt)
MANIFEST = "manifest.json"
TOKENS = "tokens.jsonl"
VOCAB = "vocab.jsonl"
RECORDS = "memory_records.jsonl"
QK_FILES = ("queries", "keys")
_SAFE_KEY = re.compile(r"[A-Za-z0-9_]+")


def column_file(key: str) -> str:
    """A column's file name: `col-<key>.npy` (other characters hex-encoded: `colx-<hex>.npy`)."""
    return f"col-{key}.npy" if _SAFE_KEY.fullmatch(key) else f"colx-{key.encode('utf-8').hex()}.npy"


def _column_key(name: str) -> str | None:
    if name.startswith("col-") and name.endswith(".npy"):
        return name[4:-4]
    if name.startswith("colx-") and name.endswith(".npy"):
        try:
            return bytes.fromhex(name[5:-4]).decode("utf-8")
        except ValueError:
            return None
    return None


class AppendFile:
    """A file only ever appended to, through the shared descriptor cache (no buffer to lose)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key = next(_KEYS)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600))
        self._close = weakref.finalize(self, _DESCRIPTORS.forget, self._key)
        self.size = 0

    def append(self, data: bytes) -> None:
        if data:
            _DESCRIPTORS.pwrite(self._key, self.path, data, self.size)
            self.size += len(data)

    def close(self) -> None:
        self._close()


def _lines(items: Iterable) -> bytes:
    return "".join(json.dumps(item) + "\n" for item in items).encode("ascii")


def _token_line(token_id: int, generated: bool, text: str, data: bytes) -> list:
    return [int(token_id), int(bool(generated)), text, data.hex()]


def _record_line(record) -> dict:
    return asdict(record)


class RunWriter:
    """Writes one trace's run into `folder` (created by the caller, removed with the trace)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._tokens = AppendFile(folder / TOKENS)
        self._vocab = AppendFile(folder / VOCAB)
        self._records = AppendFile(folder / RECORDS)
        self._vocab_written = 0
        self._records_written = 0
        self._manifest_text: str | None = None

    def column_path(self, key: str) -> Path:
        return self.folder / column_file(key)

    def write_manifest(self, manifest: dict) -> None:
        """Replace manifest.json atomically if what it says changed."""
        text = json.dumps(
            {"memviz_run": RUN_FORMAT, "pid": os.getpid(), "started": self.started, "manifest": manifest}
        )
        if text == self._manifest_text:
            return
        tmp = self.folder / f".{MANIFEST}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.folder / MANIFEST)
        self._manifest_text = text

    def commit(self, trace, step: int, token_id: int, generated: bool, text: str, data: bytes) -> None:
        """Step `step`'s columns are written: its vocabulary, memory records and (last, what makes
        it complete) its token line."""
        self._sync_vocab(trace.vocab)
        self._sync_records(trace.memory_records)
        self._tokens.append(_lines([_token_line(token_id, generated, text, data)]))
        if self._manifest_text is None or step % MANIFEST_EVERY == 0:
            self.write_manifest(trace.manifest())

    def write_steps(self, trace, steps: int) -> None:
        """A trace that held steps before it spooled (loaded, then grown): its tokens so far."""
        rows = zip(
            trace.token_ids[:steps], trace.generated, trace.token_text, trace.token_bytes, strict=False
        )
        self._tokens.append(_lines(_token_line(*row) for row in rows))

    def _sync_vocab(self, vocab: dict[int, str]) -> None:
        n = len(vocab)
        if n > self._vocab_written:  # entries are only added, in order: the new ones are the last
            new = list(islice(reversed(vocab.items()), n - self._vocab_written))[::-1]
            self._vocab.append(_lines([int(i), t] for i, t in new))
            self._vocab_written = n

    def _sync_records(self, records: dict) -> None:
        n = len(records)
        if n > self._records_written:
            new = list(islice(reversed(records.values()), n - self._records_written))[::-1]
            self._records.append(_lines(_record_line(r) for r in new))
        elif n < self._records_written:  # cleared (another store): write what is there now
            self._records.close()
            self._records = AppendFile(self.folder / RECORDS)
            self._records.append(_lines(_record_line(r) for r in records.values()))
        self._records_written = n

    def close(self) -> None:
        for handle in (self._tokens, self._vocab, self._records):
            handle.close()


def remove(folder: Path) -> None:
    """The finalizer of a trace's folder (its writers' descriptors go with them)."""
    shutil.rmtree(folder, ignore_errors=True)


# -- reading a run back -------------------------------------------------------------------------
def _complete_lines(path: Path, where: str, what: str) -> list:
    """The JSON lines of an append-only file; a last line cut short (a crash mid-write) is dropped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise MemvizError(f"{where}: cannot read {path.name} ({exc.strerror})") from None
    lines = raw.split(b"\n")[:-1]  # the piece after the last newline is not a complete line
    out = []
    for number, line in enumerate(lines, 1):
        try:
            out.append(json.loads(line))
        except ValueError:
            raise MemvizError(f"{where}: {path.name} line {number} is not a {what}") from None
    return out


def read_manifest(folder: Path) -> dict:
    where = str(folder)
    if not folder.is_dir():
        raise MemvizError(f"{where}: no such run folder")
    path = folder / MANIFEST
    if not path.is_file():
        raise MemvizError(f"{where}: not a memviz run folder (no {MANIFEST})")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        raise MemvizError(f"{where}: {MANIFEST} is not a run's manifest") from None
    if (
        not isinstance(run, dict)
        or run.get("memviz_run") != RUN_FORMAT
        or not isinstance(run.get("manifest"), dict)
    ):
        raise MemvizError(f"{where}: {MANIFEST} is not a run's manifest (format {RUN_FORMAT})")
    return run


def read_run(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """A run folder's complete steps as the arrays of a trace file (`Trace.to_arrays`'s keys); the
    columns are read-only memory maps of the folder's files. One-line MemvizError where the folder
    is not a run or is damaged."""
    folder = Path(folder)
    where = str(folder)
    run = read_manifest(folder)
    tokens = _complete_lines(folder / TOKENS, where, "step")
    T = len(tokens)
    if T == 0:
        raise MemvizError(f"{where}: the run recorded no complete step: nothing to recover")
    try:
        ids = [int(t[0]) for t in tokens]
        generated = [bool(t[1]) for t in tokens]
        texts = [str(t[2]) for t in tokens]
        pieces = [bytes.fromhex(t[3]) for t in tokens]
    except (TypeError, ValueError, IndexError, KeyError):
        raise MemvizError(f"{where}: {TOKENS} holds a line that is not a step") from None
    manifest = dict(run["manifest"])
    if isinstance(manifest.get("prompt_tokens"), int):  # the text was queued whole; T of it was read
        manifest["prompt_tokens"] = min(manifest["prompt_tokens"], T)
    arrays: dict[str, np.ndarray] = {
        "manifest": np.array(json.dumps(manifest)),
        "token_ids": np.array(ids, dtype=np.int64),
        "token_text": np.array(texts, dtype=str),
        "generated": np.array(generated, dtype=bool),
        "token_bytes": np.frombuffer(b"".join(pieces), dtype=np.uint8).copy(),
        "token_byte_offsets": np.concatenate([[0], np.cumsum([len(p) for p in pieces])]).astype(np.int64),
    }
    if any(text.endswith("\0") for text in texts):
        arrays["token_text_length"] = np.array([len(text) for text in texts], dtype=np.int64)
    for path in sorted(folder.iterdir()):
        key = _column_key(path.name)
        if key is None and path.stem in QK_FILES and path.suffix == ".npy":
            key = path.stem
        if key is not None:
            arrays[key] = read_spool(path, T, where=f"{where}: {path.name}")
    if (folder / "segment_queries.npy").is_file() and "window_start" in arrays:  # --slide's windows
        from memviz.core.sliding import segments_from_starts

        arrays["segments"], rows = segments_from_starts(arrays["window_start"])
        for key in ("segment_queries", "segment_keys"):
            arrays[key] = read_spool(folder / f"{key}.npy", rows, where=f"{where}: {key}.npy")
    vocab = _complete_lines(folder / VOCAB, where, "vocabulary entry")
    try:
        pairs = {int(i): str(t) for i, t in vocab}
    except (TypeError, ValueError):
        raise MemvizError(f"{where}: {VOCAB} holds a line that is not [id, text]") from None
    if pairs:
        ids_sorted = sorted(pairs)
        arrays["vocab_ids"] = np.array(ids_sorted, dtype=np.int64)
        arrays["vocab_text"] = np.array([pairs[i] for i in ids_sorted], dtype=str)
    records = _complete_lines(folder / RECORDS, where, "memory record")
    if records:
        try:
            raw = {str(int(r["id"])): {k: v for k, v in r.items() if k != "id"} for r in records[::-1]}
        except (TypeError, ValueError, KeyError):
            raise MemvizError(f"{where}: {RECORDS} holds a line that is not a memory record") from None
        first = {k: raw[k] for k in sorted(raw, key=int)}  # [::-1] above: the first record of an id wins
        arrays["memory_records"] = np.array(json.dumps(first))
    return arrays


@dataclass(frozen=True)
class RunInfo:
    folder: Path
    started: str
    pid: int
    running: bool  # its process is alive (this machine): still being written
    steps: int
    model: str
    disk_bytes: int


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def list_runs(parent: Path) -> list[RunInfo]:
    """The run folders under `parent` (oldest first); folders that are not runs are left out."""
    runs = []
    try:
        folders = sorted(p for p in parent.iterdir() if p.is_dir())
    except OSError:
        return []
    for folder in folders:
        try:
            run = read_manifest(folder)
            steps = (folder / TOKENS).read_bytes().count(b"\n") if (folder / TOKENS).is_file() else 0
            size = sum(p.stat().st_blocks * 512 for p in folder.iterdir() if p.is_file())
        except (MemvizError, OSError):
            continue
        pid = int(run.get("pid") or 0)
        name = str((run["manifest"].get("model") or {}).get("name", "?"))
        runs.append(RunInfo(folder, str(run.get("started", "")), pid, process_alive(pid), steps, name, size))
    return runs
