"""Bounded number types for argparse: a bad value is refused while the command line is parsed.

argparse turns the ArgumentTypeError into `parser.error`, which memviz prints as one line
(`memviz: error: argument --seed: ...`) with exit status 2, before any model loads or any
memory is allocated. NaN and infinities are refused everywhere: no option means them.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

SEED_MAX = 2**32 - 1  # what every generator memviz seeds accepts (numpy's legacy one needs it)
MAX_GENERATE = 10**8  # a run holds at most this many tokens (core.session.MAX_TOKENS): absurd beyond
MAX_KNN_K = 4096  # neighbours per step; kNN-LM's paper used 1024
MAX_INDEX = 10**9  # steps, layers, heads, units: far above any model, far below a huge allocation
SCALE_RANGE = (0.25, 8.0)  # device pixels per figure pixel


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high] (either end may be open-ended)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range: {_range_text(low, high)}")
        return value

    parse.__name__ = "integer"
    return parse


def real(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
) -> Callable[[str], float]:
    """A finite number in [low, high], or (low, high] with `low_open`."""

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(
                f"{text} is not a finite number: {_range_text(low, high, low_open)}"
            )
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"{text.strip()} is out of range: {_range_text(low, high, low_open)}"
            )
        return value

    parse.__name__ = "number"
    return parse


def temperature(text: str) -> float:
    """0 (greedy), or a temperature from 0.001 to 1000: below that, logits / T overflows to NaN."""
    value = real(0.0, 1000.0)(text)
    if 0 < value < 1e-3:
        raise argparse.ArgumentTypeError(f"{text.strip()} is too small: give 0 (greedy) or 0.001 to 1000")
    return value


def _range_text(low, high, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return (
            f"give more than {_fmt(low)} and at most {_fmt(high)}"
            if low_open
            else (f"give {_fmt(low)} to {_fmt(high)}")
        )
    if low is not None:
        return f"give more than {_fmt(low)}" if low_open else f"give {_fmt(low)} or more"
    if high is not None:
        return f"give at most {_fmt(high)}"
    return "give a finite number"


def add_device_options(p: argparse.ArgumentParser) -> None:
    """--device and --dtype: where a transformers model runs and in what precision."""
    from memviz.backends.placement import DEVICES, DTYPES

    p.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="auto: the GPU where there is one (default), else cpu",
    )
    p.add_argument(
        "--dtype", choices=DTYPES, default="float32", help="the weights' precision (default float32)"
    )


def number_list(kind: type, low: float, high: float, what: str) -> Callable[[str], list]:
    """A comma-separated list of numbers in [low, high], sorted, each once (knn's --lambdas and --k,
    copy's --distances, context's --windows)."""

    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {what}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"{text!r}: give at least one value")
        bad = [v for v in values if not (low <= v <= high) or (isinstance(v, float) and not math.isfinite(v))]
        if bad:
            show = [str(b) if isinstance(b, int) else f"{b:g}" for b in (low, high)]
            raise argparse.ArgumentTypeError(f"{bad[0]} is out of range: {show[0]} to {show[1]}")
        return sorted(set(values))

    return parse
