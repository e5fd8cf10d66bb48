"""`memviz search --trace T --layer L [--units 3,17,40] --steps A-B --top N`: pattern search.

The spans of the run (and of a memory store's documents, with --memory) whose states at layer L are
closest to those of steps A..B: rank, where, steps, distance and the text with a little context.
A transformer trace keeps no layer states: they are computed with the model that made it (--model,
by default the one its manifest names). Distances: see memviz.core.search (euclidean or binary).
"""

from __future__ import annotations

import argparse
import sys

from memviz.core import search as pattern
from memviz.core.trace import Trace
from memviz.errors import MemvizError
from memviz.options import MAX_INDEX, add_device_options, integer, real

MAX_TOP = 10_000


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "search",
        help="find the spans whose states are closest to steps A-B of a layer (pattern search)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--trace", required=True, metavar="FILE.memviz", help="the run to search")
    p.add_argument("--layer", required=True, type=integer(0, MAX_INDEX), help="the layer (from 0)")
    p.add_argument("--steps", required=True, metavar="A-B", help="the query: steps A to B, both included")
    p.add_argument("--units", metavar="U,U,...", help="recurrent: only these units of the layer (from 0)")
    p.add_argument("--top", type=integer(1, MAX_TOP), default=pattern.DEFAULT_TOP, help="how many (10)")
    p.add_argument(
        "--metric",
        choices=pattern.METRICS,
        default="euclidean",
        help="euclidean: L2 over the span's states; binary: (step, unit) cells whose on/off differs",
    )
    p.add_argument(
        "--threshold",
        type=real(-1e6, 1e6),
        default=pattern.DEFAULT_THRESHOLD,
        help=f"binary: a unit is on above this ({pattern.DEFAULT_THRESHOLD:g})",
    )
    p.add_argument("--memory", metavar="STORE", help="also search the documents of this memory store")
    p.add_argument("--model", help="the model that made the trace (default: the one its manifest names)")
    p.add_argument("--csv", metavar="FILE", help="also write the matches here")
    add_device_options(p)
    p.set_defaults(func=cmd_search)


def query_from_args(args: argparse.Namespace) -> pattern.Query:
    start, end = pattern.parse_steps(args.steps)
    return pattern.Query(
        layer=args.layer,
        start=start,
        end=end,
        units=pattern.parse_units(args.units),
        top=args.top,
        metric=args.metric,
        threshold=args.threshold,
    )


def _backend(trace: Trace, args: argparse.Namespace):
    from memviz.backends.registry import load_backend

    spec = args.model or trace.model.get("source") or trace.model.get("name")
    if not spec:
        raise MemvizError("the trace does not name its model: give --model")
    try:
        return load_backend(str(spec), device=args.device, dtype=args.dtype)
    except MemvizError as exc:
        if args.model:
            raise
        raise MemvizError(f"{exc} (the model the trace names; give --model)") from None


def format_table(result: pattern.SearchResult) -> list[str]:
    lines = [f"query: {result.query.describe()}: {pattern.brief(result.query_text)!r}"]
    if not result.matches:
        return [*lines, "no span of that length elsewhere"]
    where = [m.source if m.in_run else f"doc {m.document_id} {m.source}" for m in result.matches]
    width = max(5, *(len(w) for w in where))
    steps = [f"{m.start}-{m.end}" for m in result.matches]
    swidth = max(5, *(len(s) for s in steps))
    lines.append(f"{'rank':>4}  {'where':<{width}}  {'steps':<{swidth}}  {'distance':>10}  text")
    for m, w, s in zip(result.matches, where, steps, strict=True):
        text = f"{pattern.brief(m.before)}[{pattern.brief(m.text)}]{pattern.brief(m.after)}"
        lines.append(f"{m.rank:>4}  {w:<{width}}  {s:<{swidth}}  {m.distance:>10.4g}  {text}")
    return lines


def cmd_search(args: argparse.Namespace) -> int:
    from memviz.export.data import write_csv
    from memviz.export.out_files import check_out_path

    out = check_out_path(args.csv) if args.csv else None  # before any work: a bad path costs nothing
    query = query_from_args(args)
    trace = Trace.load(args.trace)
    pattern.check_query(trace, query)  # before the model loads
    backend = _backend(trace, args) if pattern.needs_model(trace, bool(args.memory)) else None
    store = None
    if args.memory:
        from memviz.memory.store import MemoryStore

        store = MemoryStore.open(args.memory, backend=backend, create=False)
    try:
        result = pattern.search(trace, query, backend=backend, store=store)
    finally:
        if store is not None:
            store.close()
    for note in result.notes:
        print(f"memviz: note: {note}", file=sys.stderr)
    print("\n".join(format_table(result)))
    if out is not None:
        write_csv(pattern.match_rows(result), out)
        print(f"wrote {out}")
    return 0
