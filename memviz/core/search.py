"""Pattern search (LSTMVis's match view, exBERT's search): the spans whose states are closest to a
selected one, in the run and in the memory store's documents.

The query is the states of steps A..B (both included) of one layer: a recurrent layer's hidden
state h (optionally only some units), read from the trace; a transformer's residual stream after
block L, which a trace does not keep: it is computed by one batched forward pass over the trace's
tokens (memviz.backends.layer_states; equal to the stepped run to 7e-7), so traces stay their size
and need no new option. A transformer trace made with interventions is refused (the pass would
read the model without them); a recurrent trace's states are its own, interventions included.

Candidates: every span of the same length, in the run (not overlapping the query) and in each
document of a store (read by the same model, recurrent or transformer alike, from its tokens).
Distances, over the span's states flattened (steps x units):

- `euclidean`: sqrt(sum over steps j and units u of (x[s + j, u] - q[j, u])^2);
- `binary` (LSTMVis): a unit is on at a step when its value is above `threshold`; the distance is
  the number of (step, unit) cells whose on/off differs from the query's (0: the same pattern).

The top N are the nearest spans that overlap neither the query nor a span ranked before them in
the same run or document (ties: the earlier span first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from memviz.core.trace import Trace
from memviz.errors import MemvizError

METRICS = ("euclidean", "binary")
DEFAULT_THRESHOLD = 0.3  # binary: a unit is "on" above this (h lies in -1..1)
DEFAULT_TOP = 10
CONTEXT_CHARS = 24  # text shown either side of a match
CHUNK_FLOATS = 1 << 22  # floats per block of windows compared at once (16 MB of float32)
RECORDS_PAGE = 5000  # store records read per query when rebuilding a document's tokens
RUN = "run"


@dataclass(frozen=True)
class Query:
    """Steps start..end (inclusive) of `layer`; `units` (recurrent only) or None for all of them."""

    layer: int
    start: int
    end: int
    units: tuple[int, ...] | None = None
    top: int = DEFAULT_TOP
    metric: str = "euclidean"
    threshold: float = DEFAULT_THRESHOLD

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def describe(self) -> str:
        units = f", units {','.join(map(str, self.units))}" if self.units else ""
        metric = self.metric if self.metric == "euclidean" else f"binary, threshold {self.threshold:g}"
        return f"steps {self.start}-{self.end} of layer {self.layer}{units} ({metric})"


@dataclass(frozen=True)
class Match:
    """One span found: where (the run, or a store document), its steps, distance and text."""

    rank: int
    source: str  # RUN or the document's name
    document_id: int | None  # None: the run
    start: int
    end: int
    distance: float
    text: str  # the span's own text
    before: str  # a little context either side
    after: str

    @property
    def in_run(self) -> bool:
        return self.document_id is None


@dataclass
class SearchResult:
    query: Query
    query_text: str
    matches: list[Match]
    searched: dict[str, int] = field(default_factory=dict)  # source -> candidate spans compared
    notes: list[str] = field(default_factory=list)


# -- the query, checked ------------------------------------------------------------------------------
def parse_steps(text: str) -> tuple[int, int]:
    """ "A-B" -> (A, B) (both included); "A" -> (A, A)."""
    parts = str(text).strip().split("-")
    try:
        if len(parts) == 1:
            a = b = int(parts[0])
        elif len(parts) == 2:
            a, b = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise MemvizError(f"--steps {text!r}: give A-B, two step numbers (from 0), e.g. 10-15") from None
    if a > b:
        raise MemvizError(f"--steps {text}: the first step comes after the last")
    return a, b


def parse_units(text: str | None) -> tuple[int, ...] | None:
    """ "3,17,40" -> (3, 17, 40); None or "" -> None (every unit)."""
    if text is None or not str(text).strip():
        return None
    try:
        units = tuple(int(u) for u in str(text).split(","))
    except ValueError:
        raise MemvizError(f"--units {text!r}: give unit numbers separated by commas, e.g. 3,17,40") from None
    if len(set(units)) != len(units):
        raise MemvizError(f"--units {text}: a unit is named twice")
    return units


def layer_width(trace: Trace, layer: int) -> int:
    """How many units (recurrent) or dimensions (transformer) `layer` has."""
    sizes = trace.model.get("layer_sizes")
    if sizes and 0 <= layer < len(sizes):
        return int(sizes[layer])
    if trace.has("hidden"):
        return int(trace.array("hidden").shape[2])
    return int(trace.model.get("hidden_size") or 0)


def num_layers(trace: Trace) -> int:
    if trace.has("hidden"):
        return int(trace.array("hidden").shape[1])
    return int(trace.model.get("num_layers") or 0)


def check_query(trace: Trace, query: Query) -> None:
    """A query this trace can answer, or one line that says why not."""
    if query.metric not in METRICS:
        raise MemvizError(f"--metric {query.metric!r}: one of {', '.join(METRICS)}")
    if query.top < 1:
        raise MemvizError(f"--top {query.top}: at least 1")
    T = len(trace)
    if T == 0:
        raise MemvizError("the trace has no steps")
    if not 0 <= query.start <= query.end < T:
        raise MemvizError(
            f"--steps {query.start}-{query.end} is out of range: the trace has steps 0..{T - 1}"
        )
    layers = num_layers(trace)
    if not 0 <= query.layer < layers:
        raise MemvizError(f"--layer {query.layer} is out of range: the model has layers 0..{layers - 1}")
    if trace.kind == "transformer":
        if query.units:
            raise MemvizError(
                "--units: a transformer's layer is searched as a whole (its residual stream); "
                "units are for recurrent models"
            )
        if trace.manifest().get("interventions"):
            raise MemvizError(
                "this transformer trace was made with interventions; its layer states are recomputed "
                "from the model without them: search a run made without --intervene"
            )
    elif not trace.has("hidden"):
        raise MemvizError(f"the trace keeps no hidden states ({trace.architecture or 'unknown'} model)")
    width = layer_width(trace, query.layer)
    bad = [u for u in query.units or () if not 0 <= u < width]
    if bad:
        raise MemvizError(
            f"--units: unit {bad[0]} is out of range: layer {query.layer} has units 0..{width - 1}"
        )


def check_model(trace: Trace, backend) -> None:
    """The backend must be the model that made the trace (its shape and vocabulary at least)."""
    info = backend.info
    ours = (info.architecture, info.num_layers, info.hidden_size, info.vocab_size)
    model = trace.model
    theirs = (
        model.get("architecture"),
        model.get("num_layers"),
        model.get("hidden_size"),
        model.get("vocab_size"),
    )
    if ours != theirs:
        raise MemvizError(
            f"the model {info.name} ({info.architecture}, {info.num_layers} layers, width "
            f"{info.hidden_size}, {info.vocab_size} tokens) did not make this trace "
            f"({theirs[0]}, {theirs[1]} layers, width {theirs[2]}, {theirs[3]} tokens)"
        )


# -- states -------------------------------------------------------------------------------------------
def needs_model(trace: Trace, with_store: bool) -> bool:
    """A transformer trace keeps no layer states: they come from the model (so do a store's)."""
    return with_store or trace.kind == "transformer"


def select_units(states: np.ndarray, units: tuple[int, ...] | None) -> np.ndarray:
    return states if not units else states[:, list(units)]


def run_states(trace: Trace, query: Query, backend=None) -> np.ndarray:
    """[T, d] float32: the run's states at the query's layer (and units)."""
    if trace.kind == "transformer":
        if backend is None:
            raise MemvizError("a transformer trace keeps no layer states: give the model (--model)")
        from memviz.backends.layer_states import layer_states

        check_model(trace, backend)
        return layer_states(backend, trace.token_ids[: len(trace)], query.layer)
    width = layer_width(trace, query.layer)
    hidden = np.asarray(trace.array("hidden")[:, query.layer, :width], dtype=np.float32)
    return select_units(hidden, query.units)


# -- distances ---------------------------------------------------------------------------------------
def span_distances(
    states: np.ndarray, pattern: np.ndarray, metric: str = "euclidean", threshold: float = DEFAULT_THRESHOLD
) -> np.ndarray:
    """float64 [T - n + 1]: the distance of the span starting at each step from `pattern` ([n, d]).

    Sliding windows over `states` ([T, d]) compared a block at a time (memory: CHUNK_FLOATS)."""
    states = np.asarray(states)
    pattern = np.asarray(pattern)
    n = len(pattern)
    count = len(states) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.float64)
    if metric == "binary":
        values, target = states > threshold, pattern > threshold
    else:
        values, target = states.astype(np.float64), pattern.astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(values, n, axis=0)  # [count, d, n]
    target = target.T[None]  # [1, d, n]
    block = max(1, CHUNK_FLOATS // max(1, pattern.size))
    out = np.empty(count, dtype=np.float64)
    for s in range(0, count, block):
        part = windows[s : s + block]
        if metric == "binary":
            out[s : s + block] = np.count_nonzero(part != target, axis=(1, 2))
        else:
            diff = part - target
            out[s : s + block] = np.einsum("kdn,kdn->k", diff, diff)
    return out if metric == "binary" else np.sqrt(out)


def streamed_distances(
    pieces: Iterable[np.ndarray], pattern: np.ndarray, metric: str, threshold: float, units=None
) -> np.ndarray:
    """span_distances over states that come in consecutive pieces (a long document), holding one
    piece and the n - 1 steps before it at a time: each span is compared once, in the block that
    holds its last step."""
    n = len(pattern)
    out: list[np.ndarray] = []
    tail: np.ndarray | None = None
    for piece in pieces:
        piece = select_units(piece, units)
        block = piece if tail is None else np.concatenate([tail, piece])
        out.append(span_distances(block, pattern, metric, threshold))
        tail = block[len(block) - (n - 1) :] if n > 1 else block[:0]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float64)


def nearest_spans(
    distances: np.ndarray, length: int, top: int, blocked: tuple[int, int] | None = None
) -> list[int]:
    """The starts of the `top` nearest spans that overlap neither `blocked` (start, end) nor each
    other, nearest first; ties: the earlier start first. NaN counts as farthest."""
    d = np.where(np.isnan(distances), np.inf, distances)
    order = np.argsort(d, kind="stable")
    taken = np.zeros(len(d) + length, dtype=bool)  # steps already inside a chosen span
    if blocked is not None:
        taken[max(0, blocked[0]) : blocked[1] + 1] = True
    picked: list[int] = []
    for s in order:
        if len(picked) == top:
            break
        s = int(s)
        if taken[s : s + length].any():
            continue
        picked.append(s)
        taken[s : s + length] = True
    return picked


# -- text ----------------------------------------------------------------------------------------------
def span_text(labels: Sequence[str], start: int, end: int, sep: str = "") -> tuple[str, str, str]:
    """(before, span, after): the span's text and up to CONTEXT_CHARS of context either side."""
    before = sep.join(labels[max(0, start - CONTEXT_CHARS) : start])
    after = sep.join(labels[end + 1 : end + 1 + CONTEXT_CHARS])
    if sep and before:
        before += sep
    if sep and after:
        after = sep + after
    return before[-CONTEXT_CHARS:], sep.join(labels[start : end + 1]), after[:CONTEXT_CHARS]


def _separator(model: dict) -> str:
    return " " if model.get("tokenizer") == "word" else ""  # a word tokenizer drops the spaces


# -- the store's documents ---------------------------------------------------------------------------
@dataclass
class Document:
    id: int
    name: str
    token_ids: list[int]
    texts: list[str]


def store_documents(store, backend) -> Iterator[Document]:
    """Each document of a store as its tokens, rebuilt from the store's records.

    A store keeps a document's text and, per entry, the token at positions 1..n-1 (the value) with
    its text; token 0 is what the text holds before token 1, encoded again with the model."""
    for info in store.documents():
        ids: list[int] = []
        texts: list[str] = []
        head = ""
        while True:  # a page at a time: only the ids and texts are kept
            page = store.records(info.id, offset=len(ids), limit=RECORDS_PAGE)
            if page and not ids:
                head = page[0].before  # the snippet starts at the text's start: token 0 is all of it
            ids.extend(int(r.next_token) for r in page)
            texts.extend(r.token_text for r in page)
            if len(page) < RECORDS_PAGE:
                break
        if not ids:
            continue
        head_ids = list(backend.encode(head).ids) if head else []
        yield Document(info.id, info.name, head_ids + ids, [head] * len(head_ids) + texts)


# -- the search ----------------------------------------------------------------------------------------
def _candidates(
    distances: np.ndarray, query: Query, blocked: tuple[int, int] | None
) -> tuple[list[tuple[float, int]], int]:
    starts = nearest_spans(distances, query.length, query.top, blocked)
    return [(float(distances[s]), s) for s in starts], len(distances)


def search(
    trace: Trace,
    query: Query,
    backend=None,
    store=None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> SearchResult:
    """The query's top N matches in the run (and in `store`'s documents, read by `backend`).

    `progress(done, total)` after each document; `cancelled()` is checked between documents."""
    check_query(trace, query)
    if store is not None:
        if backend is None:
            raise MemvizError("searching a memory store needs the model (--model)")
        check_model(trace, backend)
    states = run_states(trace, query, backend)
    pattern = states[query.start : query.end + 1]
    sep = _separator(trace.model)
    labels = trace.token_labels
    query_text = sep.join(labels[query.start : query.end + 1])
    found: list[tuple[float, int, int, int, Document | None]] = []  # distance, order, start, source
    distances = span_distances(states, pattern, query.metric, query.threshold)
    run, compared = _candidates(distances, query, (query.start, query.end))
    found += [(d, 0, s, 0, None) for d, s in run]
    searched = {RUN: compared}
    notes: list[str] = []
    if store is not None:
        from memviz.backends.layer_states import layer_state_pieces

        documents = list(store_documents(store, backend))
        for k, doc in enumerate(documents, start=1):
            if cancelled is not None and cancelled():
                notes.append(f"cancelled after {k - 1} of {len(documents)} documents")
                break
            pieces = layer_state_pieces(backend, doc.token_ids, query.layer)
            distances = streamed_distances(pieces, pattern, query.metric, query.threshold, query.units)
            hits, compared = _candidates(distances, query, None)
            found += [(d, k, s, k, doc) for d, s in hits]
            searched[doc.name] = searched.get(doc.name, 0) + compared
            if progress is not None:
                progress(k, len(documents))
        if trace.kind == "recurrent" and trace.manifest().get("interventions"):
            notes.append("the run's states carry its interventions; the documents are read without them")
    found.sort(key=lambda f: (f[0], f[1], f[2]))  # nearest; ties: the run, then documents, earlier first
    matches = []
    doc_sep = _separator(backend.info.extra) if backend is not None else sep
    for rank, (distance, _order, start, _k, doc) in enumerate(found[: query.top], start=1):
        end = start + query.length - 1
        if doc is None:
            before, text, after = span_text(labels, start, end, sep)
            source, doc_id = RUN, None
        else:
            before, text, after = span_text(doc.texts, start, end, doc_sep)
            source, doc_id = doc.name, doc.id
        matches.append(Match(rank, source, doc_id, start, end, distance, text, before, after))
    return SearchResult(query, query_text, matches, searched, notes)


COLUMNS = ("rank", "source", "document_id", "start", "end", "distance", "before", "text", "after")


def match_rows(result: SearchResult) -> list[list]:
    """The matches as CSV rows, header first (the CLI's --csv and the Match panel's export)."""
    rows: list[list] = [list(COLUMNS)]
    for m in result.matches:
        doc = "" if m.document_id is None else m.document_id
        rows.append([m.rank, m.source, doc, m.start, m.end, repr(m.distance), m.before, m.text, m.after])
    return rows


def brief(text: str) -> str:
    """Text on one line: newlines and tabs as visible escapes."""
    return text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
