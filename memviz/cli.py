"""The `memviz` command line. User mistakes: one line on stderr, exit status 2; failures: exit 1."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from memviz import commands
from memviz import convert as convert_cli
from memviz import recover as recover_cli
from memviz.errors import MemvizError
from memviz.export import cli as export_cli
from memviz.export import compare as compare_cli
from memviz.export import experiment_cli, search_cli
from memviz.memory import cli as memory_cli
from memviz.options import MAX_GENERATE, integer
from memviz.train import cli as train_cli
from memviz.ui import cli as gui_cli


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise MemvizError(message)


def cmd_trace(args: argparse.Namespace) -> int:
    from memviz.paths import output_file

    out = output_file(args.out, "--out ")  # before the model runs: a bad path costs nothing
    trace = commands.make_trace(args)
    trace.save(out)
    generated = sum(trace.generated)
    print(f"wrote {out}: {len(trace)} tokens ({len(trace) - generated} read, {generated} generated)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    if args.families:
        return _list_families()
    from memviz.backends.registry import bundled_models

    models = bundled_models()
    if not models:
        print("no bundled models installed")
        return 0
    width = max(len(m.name) for m in models)
    for m in models:
        print(f"{m.name:<{width}}  {m.architecture:<5}  {m.path}")
    return 0


def _list_families() -> int:
    """What loads: each family's kind, the config.json model_type it reads, and what it shows."""
    from memviz.backends.families import families

    rows = [
        (f.name, f.kind, ", ".join(f.model_types), f.title + (f" [{f.notes}]" if f.notes else ""))
        for f in families()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"{'family':<{widths[0]}}  {'kind':<{widths[1]}}  {'model_type':<{widths[2]}}  model")
    for row in rows:
        print("  ".join(f"{cell:<{w}}" for cell, w in zip(row[:3], widths, strict=True)) + f"  {row[3]}")
    print("transformers: a folder in Hugging Face format (config.json, safetensors, tokenizer) or a hub id")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="memviz", description="See how a language model remembers.")
    from memviz import __version__

    parser.add_argument("--version", action="version", version=f"memviz {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("trace", help="run a model over text and save the trace")
    commands.add_trace_options(p)
    p.add_argument("--out", required=True, help="output .memviz file")
    p.add_argument(
        "--dense-attention",
        action="store_true",
        help="keep every attention row (trace format 1, for tools such as bertviz) instead of queries "
        "and keys (format 2: rows rebuilt exactly on demand, a file that grows with T, not T squared)",
    )
    p.add_argument(
        "--slide",
        nargs="?",
        const=True,
        type=integer(1, MAX_GENERATE),
        metavar="STRIDE",
        help="read past a transformer's context window: when it is full, keep its last window - STRIDE "
        "tokens (default STRIDE: half the window), re-encode them from position 0 and read on; each "
        "step is the model over exactly its window, whose boundaries the trace records",
    )
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("models", help="list the bundled models")
    p.add_argument("--families", action="store_true", help="list the model families memviz loads instead")
    p.set_defaults(func=cmd_models)

    # Subcommands live beside the code they drive (each module has `register(subparsers)`).
    for module in (
        train_cli,
        gui_cli,
        memory_cli,
        export_cli,
        compare_cli,
        experiment_cli,
        search_cli,
        convert_cli,
        recover_cli,
    ):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            args = (
                parser.parse_args(["gui"]) if "gui" in parser._subparsers._group_actions[0].choices else args
            )
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 0
        return int(args.func(args) or 0)
    except MemvizError as exc:
        print(f"memviz: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memviz: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a failure, not a user mistake: still one line, details on request
        if os.environ.get("MEMVIZ_DEBUG"):
            raise
        print(
            f"memviz: error: {exc.__class__.__name__}: {exc} (set MEMVIZ_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
