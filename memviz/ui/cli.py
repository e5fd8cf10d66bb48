"""`memviz gui`: the desktop app (also what `memviz` with no command opens)."""

from __future__ import annotations

import argparse


def cmd_gui(args: argparse.Namespace) -> int:
    from memviz.backends.placement import resolve_device, set_preferred
    from memviz.ui.app import run_gui

    # Given on the command line, they win over the Model picker's remembered choice for this run;
    # a device this machine lacks is refused here, before a window opens.
    if args.device is not None:
        resolve_device(args.device)
    set_preferred(args.device, args.dtype)

    return run_gui(
        model=args.model, text_file=args.text_file, play=args.play, trace_path=args.trace, memory=args.memory
    )


def register(subparsers) -> None:
    p = subparsers.add_parser("gui", help="open the desktop app (the default command)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="bundled model name, model folder, or Hugging Face id")
    source.add_argument("--trace", metavar="FILE", help="open a saved .memviz trace (no model needed)")
    p.add_argument("--text-file", metavar="F", help="text to read (UTF-8)")
    p.add_argument("--play", action="store_true", help="start reading at once")
    p.add_argument(
        "--memory",
        metavar="STORE",
        help="recall from this long-term memory store (with the model it belongs to unless --model is given)",
    )
    from memviz.backends.placement import DEVICES, DTYPES

    p.add_argument(
        "--device", choices=DEVICES, help="where the model runs (auto: the GPU where there is one)"
    )
    p.add_argument("--dtype", choices=DTYPES, help="the weights' precision (default float32)")
    p.set_defaults(func=cmd_gui)
