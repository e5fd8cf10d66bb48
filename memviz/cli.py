"""The `memviz` command line. User mistakes: one line on stderr, exit status 2; failures: exit 1."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from memviz.errors import MemvizError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise MemvizError(message)


def warn(message: str) -> None:
    print(f"memviz: warning: {message}", file=sys.stderr)


def add_trace_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The options that make a trace: shared by `trace`, `export` and `gui`."""
    p.add_argument("--model", required=required, help="bundled model name, model folder, or Hugging Face id")
    text = p.add_mutually_exclusive_group()
    text.add_argument("--text", help="text to read")
    text.add_argument("--text-file", help="file of text to read (UTF-8)")
    p.add_argument("--generate", type=int, default=0, metavar="N", help="tokens to generate after the text")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--memory", metavar="STORE", help="long-term memory store to recall from")
    p.add_argument("--knn-lambda", type=float, default=0.25)
    p.add_argument("--knn-k", type=int, default=16)
    p.add_argument("--knn-temperature", type=float, default=1.0)


def text_from_args(args: argparse.Namespace) -> str:
    from memviz.textio import read_text_file

    if args.text_file is not None:
        text, warnings = read_text_file(args.text_file)
        for w in warnings:
            warn(w)
        return text
    if args.text is None:
        raise MemvizError("give --text or --text-file")
    return args.text


def build_session(args: argparse.Namespace):
    """Load the model (and memory) that the options name, ready to read."""
    from memviz.backends.registry import load_backend
    from memviz.core.sampling import SamplingConfig
    from memviz.core.session import RecallSettings, Session

    sampling = SamplingConfig(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed
    )
    recall = RecallSettings(k=args.knn_k, lam=args.knn_lambda, temperature=args.knn_temperature)
    backend = load_backend(args.model)
    memory = None
    if getattr(args, "memory", None):
        from memviz.memory.store import MemoryStore

        memory = MemoryStore.open(args.memory, backend=backend, create=False)
    return Session(backend, sampling=sampling, memory=memory, recall=recall)


def make_trace(args: argparse.Namespace):
    text = text_from_args(args)
    if args.generate < 0:
        raise MemvizError(f"--generate must be 0 or more, got {args.generate}")
    session = build_session(args)
    for w in session.feed(text):
        warn(w)
    session.generate(args.generate)
    session.run()
    if session.stop_reason:
        warn(session.stop_reason)
    return session.trace


def cmd_trace(args: argparse.Namespace) -> int:
    from memviz.paths import output_file

    out = output_file(args.out, "--out ")  # before the model runs: a bad path costs nothing
    trace = make_trace(args)
    trace.save(out)
    generated = sum(trace.generated)
    print(f"wrote {out}: {len(trace)} tokens ({len(trace) - generated} read, {generated} generated)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from memviz.backends.registry import bundled_models

    models = bundled_models()
    if not models:
        print("no bundled models installed")
        return 0
    width = max(len(m.name) for m in models)
    for m in models:
        print(f"{m.name:<{width}}  {m.architecture:<5}  {m.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="memviz", description="See how a language model remembers.")
    from memviz import __version__

    parser.add_argument("--version", action="version", version=f"memviz {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("trace", help="run a model over text and save the trace")
    add_trace_options(p)
    p.add_argument("--out", required=True, help="output .memviz file")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("models", help="list the bundled models")
    p.set_defaults(func=cmd_models)

    for register in _command_modules():
        register(sub)
    return parser


def _command_modules() -> list[Callable]:
    """Subcommands that live beside the code they drive (each module has `register(subparsers)`)."""
    from importlib import import_module

    names = ["memviz.train.cli", "memviz.ui.cli", "memviz.memory.cli", "memviz.export.cli"]
    registers = []
    for name in names:
        try:
            registers.append(import_module(name).register)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return registers


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
