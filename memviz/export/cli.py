"""`memviz export`: figures, animations and CSV from a trace, with no window.

    memviz export (--trace FILE.memviz | <trace options>) (--panel NAME | --all) [--step N]
                  [--layer L] [--head H] --format png|svg|pdf|gif|mp4 [--scale S] [--theme talk|dark]
                  [--colour-scale stable|fixed|step]
                  [--animate [--from A --to B]] --out PATH
    memviz export --trace FILE --format csv --series unit|attention|topk [--layer L] [--unit U] ... --out F.csv

Steps are counted from 0, as on the panels' axes. A saved session's view (layer, head, unit,
theme, step, colour scale) is the default for every option it holds.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from memviz.commands import add_trace_options, make_trace
from memviz.errors import MemvizError
from memviz.options import MAX_INDEX, SCALE_RANGE, integer, real

FIGURE_FORMATS = ("png", "svg", "pdf")
ANIMATION_FORMATS = ("gif", "mp4")
ALL_FORMATS = FIGURE_FORMATS + ANIMATION_FORMATS + ("csv",)
MAX_SIDE = 16384  # device pixels: QPainter's raster engine draws nothing (and warns per item) past 32767
MAX_PIXELS = 64_000_000  # one PNG: 256 MB of ARGB
MAX_FRAME_PIXELS = 3840 * 2160  # one animation frame (a GIF keeps every frame in memory)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="render panels to PNG/SVG/PDF, animate to GIF/MP4, or write a series as CSV",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--trace", metavar="FILE", help="a saved trace or session (.memviz); no model is loaded")
    add_trace_options(p, required=False)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--panel", metavar="NAME", help="the panel to draw (see --list-panels)")
    which.add_argument(
        "--all", action="store_true", help="every panel that shows this trace, into the folder --out"
    )
    which.add_argument("--list-panels", action="store_true", help="print the panels for this trace and stop")
    index = integer(0, MAX_INDEX)
    p.add_argument("--step", type=index, help="the step shown, from 0 (default: the last)")
    p.add_argument("--layer", type=index)
    p.add_argument("--head", type=index)
    p.add_argument("--unit", type=index)
    p.add_argument("--format", choices=ALL_FORMATS, help="default: from the --out file name")
    p.add_argument(
        "--scale",
        type=float,  # bounds checked in cmd_export
        default=1.0,
        help=f"PNG/GIF/MP4 pixels per figure pixel, {SCALE_RANGE[0]:g} to {SCALE_RANGE[1]:g} (2 = retina)",
    )
    p.add_argument("--size", metavar="WxH", help="figure size in pixels at 96 dpi (default 1280x720)")
    p.add_argument(
        "--theme", choices=("dark", "talk"), help="talk: light background, larger fonts, for slides"
    )
    p.add_argument(
        "--colour-scale",
        dest="colour_scale",
        choices=("stable", "fixed", "step"),
        help="heatmap colours: stable (default: one scale over the steps drawn), fixed (the quantity's "
        "natural range: 0..1, -1..1, the run's largest |c|), step (each step's own range)",
    )
    p.add_argument("--animate", action="store_true", help="one frame per step (GIF or MP4)")
    p.add_argument("--from", dest="start", type=index, metavar="A", help="first step of the animation")
    p.add_argument("--to", dest="stop", type=index, metavar="B", help="last step of the animation (included)")
    p.add_argument(
        "--fps", type=real(0.1, 120.0), default=4.0, help="animation frames per second, 0.1 to 120"
    )
    p.add_argument("--series", choices=("unit", "attention", "topk"), help="CSV: which numbers")
    p.add_argument("--out", help="output file (a folder with --all)")
    p.set_defaults(func=cmd_export)


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise MemvizError(f"--size {text}: give width x height in pixels, e.g. 1280x720") from None
    if not (100 <= width <= 10000 and 100 <= height <= 10000):
        raise MemvizError(f"--size {text}: each side must be 100 to 10000 pixels")
    return width, height


def check_pixels(fmt: str, animate: bool, size: tuple[int, int] | None, scale: float) -> None:
    """A raster image or frame the machine can hold and QPainter can draw: refused before any work."""
    if fmt not in ("png", "gif", "mp4"):
        return  # SVG and PDF are vectors: --scale does not apply
    from memviz.export.render import DEFAULT_SIZE

    width, height = size or DEFAULT_SIZE
    w, h = round(width * scale), round(height * scale)
    limit = MAX_FRAME_PIXELS if animate else MAX_PIXELS
    if max(w, h) > MAX_SIDE or w * h > limit:
        what = "each frame" if animate else "the image"
        raise MemvizError(
            f"--scale {scale:g} at {width}x{height} makes {what} {w}x{h} pixels; the most is "
            f"{MAX_SIDE} a side and {limit / 1e6:.1f} million pixels: give a smaller --scale or --size"
        )


def check_out(args: argparse.Namespace, fmt: str) -> None:
    """--out checked before the trace is loaded or made: a bad path costs nothing."""
    from memviz.paths import output_file

    if args.out is None or args.list_panels:
        return
    if args.all and fmt != "csv":
        folder = Path(args.out)
        if folder.exists() and not folder.is_dir():
            raise MemvizError(f"--out {folder}: is a file; --all writes into a folder")
        if not (folder.parent if str(folder.parent) else Path(".")).is_dir():
            raise MemvizError(f"--out {folder}: folder {folder.parent} does not exist")
        return
    output_file(args.out, "--out ")


def load_input(args: argparse.Namespace):
    """(trace, saved view state or None)."""
    if args.trace is not None:
        if args.model is not None or args.text is not None or args.text_file is not None:
            raise MemvizError("give either --trace FILE or --model with --text/--text-file, not both")
        from memviz.export.session_file import load_session

        saved = load_session(args.trace)
        return saved.trace, (saved.state if saved.has_view else None)
    if args.model is None:
        raise MemvizError("give --trace FILE.memviz, or --model M with --text S (or --text-file F)")
    return make_trace(args), None


def view_state(args: argparse.Namespace, trace, saved):
    from memviz.core.view import ViewState

    n = len(trace)
    if n == 0:
        raise MemvizError("the trace has no steps to draw")
    base = saved or ViewState(cursor=n - 1)
    step = base.cursor if args.step is None else args.step
    if not 0 <= step < n:
        raise MemvizError(f"--step {step} is out of range: this trace has {n} steps (0..{n - 1})")
    model = trace.model
    checks = (
        ("layer", args.layer, model.get("num_layers"), "layers"),
        ("head", args.head, model.get("num_heads") if trace.kind == "transformer" else None, "heads"),
        ("unit", args.unit, model.get("hidden_size") if trace.architecture == "lstm" else None, "units"),
    )
    for name, value, upper, what in checks:
        if value is not None and (value < 0 or (upper and value >= upper)):
            limit = f"the model has {upper} {what} (0..{upper - 1})" if upper else "must be 0 or more"
            raise MemvizError(f"--{name} {value} is out of range: {limit}")
    return replace(
        base,
        cursor=step,
        layer=base.layer if args.layer is None else args.layer,
        head=base.head if args.head is None else args.head,
        unit=base.unit if args.unit is None else args.unit,
        theme=args.theme or (base.theme if saved else "talk"),
        scale=getattr(args, "colour_scale", None) or base.scale,
        follow=False,
    )


def decide_format(args: argparse.Namespace) -> str:
    if args.format or args.list_panels:
        return args.format
    if args.all:
        return "gif" if args.animate else "png"
    if args.out is None:
        raise MemvizError("give --out (a file; a folder with --all)")
    suffix = Path(args.out).suffix.lower().lstrip(".")
    if suffix in ALL_FORMATS:
        return suffix
    raise MemvizError(f"--out {args.out}: give --format ({', '.join(ALL_FORMATS)}) or end the name with one")


def cmd_export(args: argparse.Namespace) -> int:
    from memviz.export import render
    from memviz.paths import replacing

    fmt = decide_format(args)
    size = parse_size(args.size)
    if not args.scale > 0:
        raise MemvizError(f"--scale must be more than 0, got {args.scale}")
    if not SCALE_RANGE[0] <= args.scale <= SCALE_RANGE[1]:
        low, high = SCALE_RANGE
        raise MemvizError(f"--scale {args.scale:g} is out of range: give {low:g} to {high:g}")
    if not args.fps > 0:
        raise MemvizError(f"--fps must be more than 0, got {args.fps}")
    animate = args.animate or fmt in ANIMATION_FORMATS
    if args.animate and fmt not in ANIMATION_FORMATS:
        raise MemvizError(f"--animate writes gif or mp4, not {fmt}")
    if (args.start is not None or args.stop is not None) and not animate:
        raise MemvizError("--from/--to go with --animate (gif or mp4)")
    if fmt != "csv" and args.series:
        raise MemvizError("--series goes with --format csv")
    check_pixels(fmt, animate, size, args.scale)
    check_out(args, fmt)

    trace, saved = load_input(args)
    if args.list_panels:
        render.ensure_app()
        for cls in render.supported_panel_classes(trace):
            print(f"{cls.name:<16} {cls.title}")
        return 0
    if args.out is None:
        raise MemvizError("give --out (a file; a folder with --all)")
    state = view_state(args, trace, saved)

    if fmt == "csv":
        from memviz.export.data import export_csv

        if args.all or args.panel:
            raise MemvizError("CSV takes --series (unit, attention, topk), not --panel/--all")
        with replacing(args.out, "--out ") as tmp:
            export_csv(
                trace,
                tmp,
                series=args.series,
                layer=state.layer,
                head=state.head,
                unit=state.unit,
                step=args.step if args.series != "attention" else args.step,
            )
        print(f"wrote {args.out}")
        return 0

    if not args.all and not args.panel:
        raise MemvizError("give --panel NAME or --all (--list-panels shows the names)")
    render.ensure_app()
    classes = render.supported_panel_classes(trace) if args.all else [render.panel_class(args.panel, trace)]
    if args.all:
        folder = Path(args.out)
        if folder.exists() and not folder.is_dir():
            raise MemvizError(f"--out {folder}: is a file; --all writes into a folder")
        if not (folder.parent if str(folder.parent) else Path(".")).is_dir():
            raise MemvizError(f"--out {folder}: folder {folder.parent} does not exist")
        if not classes:
            raise MemvizError(f"no panel shows {trace.architecture or 'this'} traces")
        folder.mkdir(exist_ok=True)
        targets = [(cls, folder / f"{render.safe_file_name(cls.name)}.{fmt}") for cls in classes]
    else:
        targets = [(classes[0], Path(args.out))]

    began = time.perf_counter()
    for cls, out in targets:
        # Written beside the target and renamed: a full disk never leaves half a file in its place.
        with replacing(out, "--out ") as tmp:
            if animate:
                from memviz.export.animate import export_animation

                export_animation(
                    trace,
                    cls,
                    state,
                    tmp,
                    fmt=fmt,
                    start=args.start,
                    stop=args.stop,
                    fps=args.fps,
                    scale=args.scale,
                    size=size,
                )
            else:
                render.export_figure(trace, cls, state, tmp, fmt=fmt, scale=args.scale, size=size)
        print(f"wrote {out}")
    if len(targets) > 1:
        print(f"{len(targets)} files in {time.perf_counter() - began:.1f} s")
    return 0
