"""`memviz experiment NAME --model M [--model M2 ...] [--text-file F] --out DIR`: a memory-span
experiment (memviz.experiments) over one or more models, written as results.csv (documented
columns), results.json (settings, seed, model fingerprints, memviz version) and the figure as
SVG, PDF and PNG in the talk theme, every model on one plot.

Progress goes to stderr. Every file is written beside and renamed into place, so Ctrl-C (or a full
disk) leaves no half-written file: what was in the folder stays until its replacement is whole.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memviz.errors import MemvizError
from memviz.options import SCALE_RANGE, SEED_MAX, integer, real


def register(subparsers) -> None:
    from memviz.experiments.registry import experiments

    p = subparsers.add_parser(
        "experiment",
        help="measure how far back a model remembers: copy, context, ...",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    names = p.add_subparsers(dest="experiment", metavar="NAME", parser_class=type(p))
    for name, experiment in experiments().items():
        q = names.add_parser(name, help=experiment.help, description=experiment.help)
        add_common_options(q, text_required=experiment.needs_text)
        experiment.add_options(q)
        q.set_defaults(func=cmd_experiment)
    p.set_defaults(func=lambda args: _no_name(p))


def _no_name(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def add_common_options(p: argparse.ArgumentParser, text_required: bool = False) -> None:
    from memviz.options import add_device_options

    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="M",
        help="a bundled model, a folder or a Hugging Face id; repeat it to put models on one plot",
    )
    p.add_argument(
        "--text-file", metavar="F", required=text_required, help="the held-out text the experiment reads"
    )
    p.add_argument("--out", metavar="DIR", required=True, help="the folder to write the results into")
    p.add_argument(
        "--seed",
        type=integer(0, SEED_MAX),
        default=0,
        help=f"seed of every random choice, 0 to {SEED_MAX} (default 0)",
    )
    p.add_argument("--theme", choices=("talk", "dark"), default="talk", help="the figure's look (talk)")
    p.add_argument(
        "--scale",
        type=real(*SCALE_RANGE),
        default=1.0,
        help=f"device pixels per pixel in the PNG, {SCALE_RANGE[0]:g} to {SCALE_RANGE[1]:g} (default 1)",
    )
    p.add_argument("--no-figure", action="store_true", help="write results.csv and results.json only")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_device_options(p)


def cmd_experiment(args: argparse.Namespace) -> int:
    from memviz.experiments.registry import experiment
    from memviz.experiments.result import prepare_out_dir

    spec = experiment(args.experiment)
    if not args.scale > 0:
        raise MemvizError(f"--scale must be more than 0, got {args.scale}")
    created = not Path(args.out).exists()
    out = prepare_out_dir(args.out)  # before any work: a bad folder costs nothing
    try:
        return _run(spec, args, out)
    except BaseException:  # an error or Ctrl-C: a folder made for this run and left empty goes
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def _run(spec, args: argparse.Namespace, out: Path) -> int:
    from memviz.backends.registry import load_backend
    from memviz.experiments.progress import Progress
    from memviz.experiments.result import record_run_settings, write_results
    from memviz.textio import read_text_file

    args.text = None
    if args.text_file is not None:
        args.text, warnings = read_text_file(args.text_file)
        for w in warnings:
            print(f"memviz: warning: {w}", file=sys.stderr)
    progress = args.progress = Progress(quiet=args.quiet)
    backends = []
    for model in args.model:
        progress.note(f"loading {model}")
        backends.append(load_backend(model, device=args.device, dtype=args.dtype))
    result = spec.run(backends, args)
    record_run_settings(result, args)
    written = write_results(result, out)
    if not args.no_figure:
        from memviz.export.experiment_figure import save_figures

        progress.note("drawing the figures")
        written += save_figures(spec.figures(), result, out, theme=args.theme, scale=args.scale)
    progress.end_line()
    for path in written:
        print(f"wrote {path}")
    return 0
