"""Is a `.memviz` file a consistent trace? Checked before anything is drawn, and before it is read.

A trace comes from outside (a colleague's file, a download), so it is bad input until proved
otherwise: every inconsistency is a MemvizError with one line naming the key. The checks run in
three stages, cheapest first, so a 3 MB file that declares a 3 GB array costs nothing:

1. `read_headers`: each `.npy` member's header (shape, dtype) straight from the zip, no data read.
   Declared sizes must match the member's stored size and stay within a bound of the file's size.
2. `check_shapes`: the shapes and dtypes against each other and against the manifest (layers,
   heads, units), on headers or on arrays alike.
3. `check_values`: once read, the values (ids inside the vocabulary, finite probabilities in [0, 1],
   finite internals and attention, monotone byte offsets).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from memviz.errors import MemvizError

# Members of an npz may be deflated: zeros (the upper triangle of dense attention) shrink ~1000x.
# A real trace's arrays hold at most a few times the file's size; allow far more, never unbounded.
MAX_EXPANSION = 64
MIN_BOUND = 256 * 2**20  # small files may always declare this much (bytes)
MAX_MANIFEST_BYTES = 16 * 2**20
FORMAT_VERSION = 1  # dense attention (or none)
FORMAT_VERSIONS = (1, 2)  # 2: queries and keys, rows rebuilt (memviz.core.attention_store)
REQUIRED = ("manifest", "token_ids", "token_text", "generated", "topk_ids", "topk_probs")

Header = tuple[tuple[int, ...], np.dtype]  # shape, dtype

# key -> (dtype kinds allowed, what it is); the shapes are checked in check_shapes
INTS = "iu"
FLOATS = "f"
KINDS: dict[str, str] = {
    "manifest": "U",
    "memory_records": "U",
    "token_ids": INTS,
    "token_text": "U",
    "token_text_length": INTS,
    "generated": "b",
    "topk_ids": INTS,
    "topk_probs": FLOATS,
    "lm_topk_ids": INTS,
    "lm_topk_probs": FLOATS,
    "knn_topk_ids": INTS,
    "knn_topk_probs": FLOATS,
    "memory_ids": INTS,
    "memory_scores": FLOATS,
    "gates": FLOATS,
    "cell": FLOATS,
    "hidden": FLOATS,
    "attention": FLOATS,
    "queries": FLOATS,
    "keys": FLOATS,
    "segment_queries": FLOATS,  # --slide (memviz.core.sliding): every window's q/k, prefix first
    "segment_keys": FLOATS,
    "segments": INTS,  # [S, 3]: per window (first step, window start, first row)
    "window_start": INTS,  # [T]: the first token each step sees
    "attention_distance": FLOATS,
    "vocab_ids": INTS,
    "vocab_text": "U",
    "token_bytes": "u",
    "token_byte_offsets": INTS,
    "target_logprob": FLOATS,
    "lm_target_logprob": FLOATS,
    "entropy": FLOATS,
    "lens_topk_ids": INTS,
    "lens_topk_probs": FLOATS,
    "lens_target_prob": FLOATS,
}
CANDIDATES = (
    ("topk_ids", "topk_probs"),
    ("lm_topk_ids", "lm_topk_probs"),
    ("knn_topk_ids", "knn_topk_probs"),
)
KIND_NAMES = {"U": "text", "b": "bool", "i": "integer", "u": "unsigned", "f": "float"}


def _bad(where: str, message: str) -> MemvizError:
    return MemvizError(f"{where}: not a consistent memviz trace: {message}")


def _kind_name(kinds: str) -> str:
    return " or ".join(dict.fromkeys(KIND_NAMES[k] for k in kinds))


# -- 1. headers -------------------------------------------------------------------------------------
def read_headers(path: Path, where: str) -> dict[str, Header]:
    """Every member's (shape, dtype), read from its .npy header only. Refuses pickled objects,
    declared sizes that differ from what the member stores, and a total beyond the file's bound."""
    headers: dict[str, Header] = {}
    pickled: list[str] = []
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                with archive.open(info) as member:
                    try:
                        version = npformat.read_magic(member)
                        if version == (1, 0):
                            shape, _fortran, dtype = npformat.read_array_header_1_0(member)
                        elif version == (2, 0):
                            shape, _fortran, dtype = npformat.read_array_header_2_0(member)
                        else:
                            raise ValueError(f"npy format {version}")
                    except ValueError as exc:
                        raise _bad(where, f"'{key}' has no readable array header ({exc})") from None
                    offset = member.tell()
                if dtype.hasobject:  # refused below, once the archive is known to be a trace
                    pickled.append(key)
                    continue
                if any(int(n) < 0 for n in shape):
                    raise _bad(where, f"'{key}' declares shape {list(shape)}")
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                stored = info.file_size - offset
                if declared != stored:
                    raise _bad(
                        where,
                        f"'{key}' declares {list(shape)} {dtype} ({_size(declared)}) but holds {_size(stored)}",
                    )
                total += declared
                headers[key] = (tuple(int(n) for n in shape), dtype)
    except (OSError, zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise MemvizError(f"{where}: not a memviz trace (not an npz archive: {exc})") from None
    if "manifest" not in headers:
        raise MemvizError(f"{where}: not a memviz trace (an npz archive with no manifest)")
    if pickled:
        raise MemvizError(f"{where}: holds pickled objects; memviz never unpickles files")
    bound = max(MIN_BOUND, MAX_EXPANSION * path.stat().st_size)
    if total > bound:
        raise _bad(
            where,
            f"its arrays declare {_size(total)} in a file of {_size(path.stat().st_size)} "
            f"(at most {_size(bound)} is read from a file that size)",
        )
    if "manifest" in headers and headers["manifest"][1].itemsize * int(np.prod(headers["manifest"][0])) > (
        MAX_MANIFEST_BYTES
    ):
        raise _bad(where, "'manifest' is larger than 16 MB")
    return headers


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


# -- the manifest ----------------------------------------------------------------------------------
def check_present(keys, where: str) -> None:
    for key in REQUIRED:
        if key not in keys:
            raise MemvizError(f"{where}: not a .memviz trace (missing '{key}')")


def parse_manifest(value: np.ndarray, where: str) -> dict:
    """The manifest as a dict whose parts have the types the rest of memviz reads."""
    if value.ndim != 0 or value.dtype.kind != "U":
        raise _bad(where, "'manifest' is not a 0-d JSON string")
    try:
        manifest = json.loads(str(value[()]))
    except ValueError:
        raise MemvizError(f"{where}: broken manifest") from None
    if not isinstance(manifest, dict):
        raise _bad(where, f"'manifest' is a JSON {type(manifest).__name__}, not an object")
    version = manifest.get("format_version")
    if version not in FORMAT_VERSIONS or type(version) is not int:
        raise MemvizError(f"{where}: trace format {version!r}; this memviz reads formats 1 and 2")
    storage = manifest.get("attention_storage")
    if storage not in (None, "qk", "dense"):
        raise _bad(where, f"manifest 'attention_storage' is {storage!r}, not 'qk' or 'dense'")
    if (version == 2) != (storage == "qk"):
        raise _bad(where, f"trace format {version} with attention_storage {storage!r} (format 2 is 'qk')")
    for part in ("model", "sampling", "memory"):
        if manifest.get(part) is not None and not isinstance(manifest[part], dict):
            raise _bad(where, f"manifest '{part}' is not an object")
    model = manifest.get("model") or {}
    for key in ("num_layers", "hidden_size", "num_heads", "vocab_size"):
        n = model.get(key)
        if n is not None and not (type(n) is int and 0 <= n <= 2**31):
            raise _bad(where, f"manifest model '{key}' is {n!r}, not a count")
    for key in ("name", "source", "architecture"):
        if model.get(key) is not None and not isinstance(model[key], str):
            raise _bad(where, f"manifest model '{key}' is not text")
    prompt = manifest.get("prompt_tokens", 0)
    if not (type(prompt) is int and prompt >= 0):
        raise _bad(where, f"manifest 'prompt_tokens' is {prompt!r}, not a count")
    return manifest


# -- 2. shapes --------------------------------------------------------------------------------------
def check_shapes(headers: Mapping[str, Header], manifest: dict, where: str) -> None:
    """Shapes and dtypes against each other and the manifest (from headers or from arrays)."""
    for key, (_shape, dtype) in headers.items():
        kinds = KINDS.get(key, "biuf")  # added keys: plain numbers only
        if dtype.kind not in kinds or (key == "token_bytes" and dtype != np.uint8):
            what = "uint8" if key == "token_bytes" else _kind_name(kinds)
            raise _bad(where, f"'{key}' is {dtype}, expected {what}")

    def shape_of(key: str) -> tuple[int, ...] | None:
        return headers[key][0] if key in headers else None

    def expect(key: str, expected: tuple, what: str) -> None:
        shape = shape_of(key)
        if shape is None:
            return
        ok = len(shape) == len(expected) and all(
            e is None or s == e for s, e in zip(shape, expected, strict=False)
        )
        if not ok:
            raise _bad(where, f"'{key}' has shape {list(shape)}, expected {what}")

    T = (shape_of("token_ids") or (0,))[0]
    expect("token_ids", (None,), "[T]")
    for key in ("token_text", "generated", "token_text_length"):
        expect(key, (T,), f"[{T}] (one per token)")
    for key in ("manifest", "memory_records"):
        expect(key, (), "a 0-d string")
    model = manifest.get("model") or {}
    L, H, A = (model.get(k) or None for k in ("num_layers", "hidden_size", "num_heads"))
    layers, units, heads = (n if n is not None else "?" for n in (L, H, A))
    for ids, probs in CANDIDATES:
        if (ids in headers) != (probs in headers):
            raise _bad(where, f"'{ids}' and '{probs}' come together; only one is there")
        expect(ids, (T, None), f"[{T}, K]")
        if ids in headers:
            expect(probs, shape_of(ids), f"{list(shape_of(ids))} like '{ids}'")
    if ("memory_ids" in headers) != ("memory_scores" in headers):
        raise _bad(where, "'memory_ids' and 'memory_scores' come together; only one is there")
    expect("memory_ids", (T, None), f"[{T}, k]")
    if "memory_ids" in headers:
        expect("memory_scores", shape_of("memory_ids"), f"{list(shape_of('memory_ids'))} like 'memory_ids'")
    # LSTM i f g o, GRU r z n: the manifest names them (old traces: an LSTM's four)
    gate_names = model.get("gate_names") or ["i", "f", "g", "o"]
    if not isinstance(gate_names, list) or not gate_names or len(gate_names) > 8:
        raise _bad(where, f"manifest model 'gate_names' is {gate_names!r}, not a short list of names")
    G = len(gate_names)
    expect(
        "gates",
        (T, L, G, H),
        f"[{T}, {layers}, {G}, {units}] (tokens, layers, {' '.join(map(str, gate_names))}, units)",
    )
    for key in ("cell", "hidden"):
        expect(key, (T, L, H), f"[{T}, {layers}, {units}] (tokens, layers, units)")
    expect("attention", (L, A, T, T), f"[{layers}, {heads}, {T}, {T}] (layers, heads, queries, keys)")
    expect("attention_distance", (T, L, A), f"[{T}, {layers}, {heads}] (steps, layers, heads)")
    _check_qk_shapes(headers, manifest, T, where)
    for key in ("target_logprob", "lm_target_logprob", "entropy"):
        expect(key, (T,), f"[{T}] (one per step)")
    expect("lens_topk_ids", (T, L, None), f"[{T}, {layers}, K] (steps, layers, candidates)")
    if ("lens_topk_ids" in headers) != ("lens_topk_probs" in headers):
        raise _bad(where, "'lens_topk_ids' and 'lens_topk_probs' come together; only one is there")
    if "lens_topk_ids" in headers:
        expect(
            "lens_topk_probs",
            shape_of("lens_topk_ids"),
            f"{list(shape_of('lens_topk_ids'))} like 'lens_topk_ids'",
        )
    expect("lens_target_prob", (T, L), f"[{T}, {layers}] (steps, layers)")
    expect("vocab_ids", (None,), "[n]")
    if "vocab_ids" in headers or "vocab_text" in headers:
        n = (shape_of("vocab_ids") or shape_of("vocab_text"))[0]
        expect("vocab_text", (n,), f"[{n}] like 'vocab_ids'")
    if ("token_bytes" in headers) != ("token_byte_offsets" in headers):
        raise _bad(where, "'token_bytes' and 'token_byte_offsets' come together; only one is there")
    expect("token_bytes", (None,), "[n bytes]")
    expect("token_byte_offsets", (T + 1,), f"[{T + 1}] (T + 1 offsets)")
    for key, (shape, _dtype) in headers.items():
        if key not in KINDS and len(shape) > 0 and not (T == 0 and shape[0] == 0) and shape[0] != T:
            raise _bad(where, f"'{key}' has {shape[0]} steps, expected {T}")


def _check_qk_shapes(headers: Mapping[str, Header], manifest: dict, T: int, where: str) -> None:
    """Format 2: queries [T, L, A, d] and keys [T, L, A_kv, d], as the manifest's layout says; or,
    a run that slid (--slide), segment_queries [N, L, A, d], segment_keys [N, L, A_kv, d] and
    segments [S, 3] (their rows are checked against the table in check_values)."""
    from memviz.core.attention_store import AttentionLayout

    if "window_start" in headers and tuple(headers["window_start"][0]) != (T,):
        raise _bad(where, f"'window_start' has shape {list(headers['window_start'][0])}, expected [{T}]")
    sliding = [key for key in ("segment_queries", "segment_keys", "segments") if key in headers]
    members = ("segment_queries", "segment_keys") if sliding else ("queries", "keys")
    present = [key for key in ("queries", "keys", *sliding) if key in headers]
    if manifest.get("format_version") != 2:
        if present:
            raise _bad(where, f"'{present[0]}' in a trace of format {manifest.get('format_version')}")
        return
    if sliding and (len(sliding) < 3 or "queries" in headers or "keys" in headers):
        missing = [f"'{k}'" for k in ("segment_queries", "segment_keys", "segments") if k not in headers]
        why = f"without {' and '.join(missing)}" if missing else "with 'queries' or 'keys' beside them"
        raise _bad(
            where, f"a sliding trace's segments come as 'segment_queries', 'segment_keys', 'segments': {why}"
        )
    if sliding and "window_start" not in headers:
        raise _bad(where, "a sliding trace's 'segments' without its 'window_start'")
    if len(present) < 2:
        missing = " and ".join(f"'{k}'" for k in ("queries", "keys") if k not in headers)
        raise _bad(where, f"trace format 2 without {missing}")
    if "attention" in headers:
        raise _bad(where, "trace format 2 holds dense 'attention' too")
    layout = AttentionLayout.from_manifest(manifest.get("attention_layout"), where)
    model = manifest.get("model") or {}
    L = layout.num_layers
    if model.get("num_layers") not in (None, L) or model.get("num_heads") not in (None, layout.num_heads):
        raise _bad(where, "manifest 'attention_layout' disagrees with the model's layers or heads")
    rows = headers[members[0]][0][0] if sliding else T
    for key, heads in zip(members, (layout.num_heads, layout.num_kv_heads), strict=True):
        shape, _dtype = headers[key]
        expected = (rows, L, heads, layout.head_dim)
        if tuple(shape) != expected:
            raise _bad(
                where,
                f"'{key}' has shape {list(shape)}, expected {list(expected)} (steps, layers, heads, head dim)",
            )


FINITE_CHUNK = 4096  # steps checked at a time: a memory-mapped q/k member is never read whole


def _finite(array: np.ndarray) -> bool:
    return all(np.isfinite(array[a : a + FINITE_CHUNK]).all() for a in range(0, len(array), FINITE_CHUNK))


# -- 3. values --------------------------------------------------------------------------------------
def check_values(arrays: Mapping[str, np.ndarray], manifest: dict, where: str) -> None:
    """The values, once read: ids in range, probabilities and internals finite."""
    model = manifest.get("model") or {}
    vocab = model.get("vocab_size") or None
    T = len(arrays["token_ids"])
    prompt = manifest.get("prompt_tokens", 0)
    if prompt > T:
        raise _bad(where, f"manifest 'prompt_tokens' is {prompt}, more than its {T} tokens")

    def ids_in_range(key: str, low: int = 0) -> None:
        if key not in arrays or arrays[key].size == 0:
            return
        values = arrays[key]
        lo, hi = int(values.min()), int(values.max())
        if lo < low or (vocab is not None and hi >= vocab and key != "memory_ids"):
            if key == "memory_ids":
                raise _bad(where, f"'{key}' holds id {lo}; memory ids are -1 (none) or more")
            bad = lo if lo < low else hi
            limit = f"0 to {vocab - 1}" if vocab is not None else f"{low} or more"
            raise _bad(where, f"'{key}' holds id {bad}, outside the vocabulary ({limit})")

    for key in ("token_ids", "vocab_ids", "topk_ids", "lm_topk_ids", "knn_topk_ids"):
        ids_in_range(key)
    ids_in_range("memory_ids", low=-1)
    for _ids, probs in CANDIDATES:
        if probs in arrays and arrays[probs].size:
            p = arrays[probs]
            if not np.isfinite(p).all():
                raise _bad(where, f"'{probs}' holds NaN or infinite probabilities")
            if p.min() < 0 or p.max() > 1 + 1e-3:
                raise _bad(where, f"'{probs}' holds probabilities outside 0 to 1")
    ids_in_range("lens_topk_ids", low=-1)  # -1: a layer the lens cannot read
    for key in ("target_logprob", "lm_target_logprob"):  # NaN: no next token (the last step)
        if key in arrays and (arrays[key] > 1e-3).any():
            raise _bad(where, f"'{key}' holds log-probabilities above 0")
    if "entropy" in arrays and (np.isinf(arrays["entropy"]).any() or (arrays["entropy"] < -1e-3).any()):
        raise _bad(where, "'entropy' holds negative or infinite entropies")
    for key in ("lens_topk_probs", "lens_target_prob"):  # NaN: no next token, or no lens at a layer
        if key in arrays and arrays[key].size:
            p = arrays[key]
            if np.isinf(p).any() or (p < 0).any() or (p > 1 + 1e-3).any():
                raise _bad(where, f"'{key}' holds probabilities outside 0 to 1")
    if "segments" in arrays:  # --slide: the windows' table against the rows held and window_start
        from memviz.core.sliding import check_segments

        problem = check_segments(
            np.asarray(arrays["segments"]),
            np.asarray(arrays["window_start"]) if "window_start" in arrays else None,
            len(arrays["segment_queries"]),
            T,
        )
        if problem:
            raise _bad(where, problem)
    elif "window_start" in arrays and T:
        starts = np.asarray(arrays["window_start"])
        if starts[0] != 0 or (np.diff(starts) < 0).any() or (starts > np.arange(T)).any():
            raise _bad(where, "'window_start' must start at 0, rise, and never pass its own step")
    for key in (
        "gates",
        "cell",
        "hidden",
        "attention",
        "queries",
        "keys",
        "segment_queries",
        "segment_keys",
        "attention_distance",
    ):
        if key in arrays and not _finite(arrays[key]):
            raise _bad(where, f"'{key}' holds NaN or infinite values")
    if "attention" in arrays and arrays["attention"].size:
        att = arrays["attention"]
        if att.min() < 0 or att.max() > 1 + 1e-2:
            raise _bad(where, "'attention' holds weights outside 0 to 1")
    if "memory_scores" in arrays and np.isnan(arrays["memory_scores"]).any():
        raise _bad(where, "'memory_scores' holds NaN")
    if "token_text_length" in arrays and arrays["token_text_length"].size:
        lengths = arrays["token_text_length"]
        if lengths.min() < 0 or lengths.max() > 2**20:
            raise _bad(where, "'token_text_length' holds impossible lengths")
    if "token_byte_offsets" in arrays:
        offsets = arrays["token_byte_offsets"]
        if offsets[0] != 0 or offsets[-1] != len(arrays["token_bytes"]) or (np.diff(offsets) < 0).any():
            raise _bad(
                where,
                f"'token_byte_offsets' must rise from 0 to {len(arrays['token_bytes'])} (the bytes held)",
            )
