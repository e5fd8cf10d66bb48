"""Interventions: what a run changes in the model, as data (`memviz trace --intervene SPEC`).

    head:L.H=zero     transformer: head H of layer L outputs zero (its attention-weighted values,
                      before the output projection) at every step
    cell:L.U=V        recurrent (LSTM): after each step unit U's cell state is V (then h = o*tanh(c))
    hidden:L.U=V      recurrent: after each step unit U's hidden state is V
    reset:S           recurrent: the state is zeroed before step S
    context:W         at every step the model sees only the last W tokens, as though the text began
                      there (transformers: positions from the window's start; recurrent: the state
                      rebuilt from those W tokens)
    mask:A-B          transformer: no query attends to positions A..B (A >= 1: position 0 stays)

Layers, heads, units and steps count from 0; spans include both ends; a clamp acts inside the step
(the layers above and that step's output read the clamped value).

`parse` checks the syntax, `check_for_model` the ranges and the kind of model, both before a run
starts; each mistake is one MemvizError line that names the spec. Specs are frozen dataclasses with
the fields the backends read (`kind`, `layer`, `head`, `unit`, `value`, `step`, `width`, `start`,
`end`): backends sit below core and read these fields without importing this module.
`to_manifest` / `from_manifest` are what the trace manifest's `interventions: [...]` holds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memviz.backends.base import ModelInfo
from memviz.errors import MemvizError

TRANSFORMER_ONLY = ("head", "mask")
RECURRENT_ONLY = ("cell", "hidden", "reset")
KINDS = ("head", "cell", "hidden", "reset", "context", "mask")
USAGE = "head:L.H=zero, cell:L.U=V, hidden:L.U=V, reset:S, context:W or mask:A-B"


@dataclass(frozen=True)
class HeadAblation:
    layer: int
    head: int
    kind: str = "head"

    @property
    def spec(self) -> str:
        return f"head:{self.layer}.{self.head}=zero"


@dataclass(frozen=True)
class Clamp:
    kind: str  # "cell" or "hidden"
    layer: int
    unit: int
    value: float

    @property
    def spec(self) -> str:
        short = f"{self.value:g}"  # "1", "2.5"; repr where :g would round
        return f"{self.kind}:{self.layer}.{self.unit}={short if float(short) == self.value else repr(self.value)}"


@dataclass(frozen=True)
class Reset:
    step: int
    kind: str = "reset"

    @property
    def spec(self) -> str:
        return f"reset:{self.step}"


@dataclass(frozen=True)
class ContextWindow:
    width: int
    kind: str = "context"

    @property
    def spec(self) -> str:
        return f"context:{self.width}"


@dataclass(frozen=True)
class SpanMask:
    start: int
    end: int  # inclusive
    kind: str = "mask"

    @property
    def spec(self) -> str:
        return f"mask:{self.start}-{self.end}"

    def covers(self, position: int) -> bool:
        return self.start <= position <= self.end


Intervention = HeadAblation | Clamp | Reset | ContextWindow | SpanMask

_NUM = r"(\d+)"
_PAIR = re.compile(rf"{_NUM}\.{_NUM}=(.+)")
_SPAN = re.compile(rf"{_NUM}-{_NUM}")


def _bad(text: str, why: str) -> MemvizError:
    return MemvizError(f"--intervene {text!r}: {why}")


def parse(text: str) -> Intervention:
    """One spec from its text; a syntax mistake is one line naming the spec and the forms."""
    kind, sep, rest = text.strip().partition(":")
    kind, rest = kind.strip().lower(), rest.strip()
    if not sep or kind not in KINDS:
        raise _bad(text, f"unknown intervention (expected {USAGE})")
    if kind == "head":
        m = _PAIR.fullmatch(rest)
        if not m:
            raise _bad(text, "expected head:L.H=zero (layer and head from 0)")
        if m.group(3).strip().lower() != "zero":
            raise _bad(text, f"a head can only be set to zero, not {m.group(3)!r}")
        return HeadAblation(int(m.group(1)), int(m.group(2)))
    if kind in ("cell", "hidden"):
        m = _PAIR.fullmatch(rest)
        if not m:
            raise _bad(text, f"expected {kind}:L.U=V (layer and unit from 0, V a number)")
        try:
            value = float(m.group(3))
        except ValueError:
            raise _bad(text, f"the value {m.group(3)!r} is not a number") from None
        if not math.isfinite(value):
            raise _bad(text, "the value must be a finite number")
        return Clamp(kind, int(m.group(1)), int(m.group(2)), value)
    if kind in ("reset", "context"):
        if not re.fullmatch(_NUM, rest):
            what = "S, the step from 0" if kind == "reset" else "W, a number of tokens"
            raise _bad(text, f"expected {kind}:{what}")
        if kind == "reset":
            return Reset(int(rest))
        if int(rest) < 1:
            raise _bad(text, "the window must hold at least 1 token")
        return ContextWindow(int(rest))
    m = _SPAN.fullmatch(rest)
    if not m:
        raise _bad(text, "expected mask:A-B (positions from 1, both ends included)")
    start, end = int(m.group(1)), int(m.group(2))
    if start < 1:
        raise _bad(text, "position 0 is never masked: A must be 1 or more")
    if end < start:
        raise _bad(text, f"the span ends ({end}) before it starts ({start})")
    return SpanMask(start, end)


def parse_all(texts: Iterable[str] | None) -> tuple[Intervention, ...]:
    """Every spec, in order; at most one context window; no spec twice."""
    specs = tuple(parse(t) for t in texts or ())
    windows = [s for s in specs if s.kind == "context"]
    if len(windows) > 1:
        raise _bad(windows[1].spec, f"only one context window a run (already {windows[0].spec})")
    seen: set[str] = set()
    for s in specs:
        if s.spec in seen:
            raise _bad(s.spec, "given twice")
        seen.add(s.spec)
    return specs


def check_for_model(specs: Sequence[Intervention], info: ModelInfo) -> None:
    """Refuse, before the run, a spec this model cannot take: the wrong kind of model, a layer, head
    or unit out of range, a cell state on a model without one."""
    recurrent = info.kind == "recurrent"
    for s in specs:
        if recurrent and s.kind in TRANSFORMER_ONLY:
            raise _bad(s.spec, f"{s.kind} is for transformers; {info.name} is a recurrent model")
        if not recurrent and s.kind in RECURRENT_ONLY:
            raise _bad(s.spec, f"{s.kind} is for recurrent models; {info.name} is a transformer")
        if s.kind in ("head", "cell", "hidden") and not 0 <= s.layer < info.num_layers:
            raise _bad(
                s.spec, f"layer {s.layer} out of range: {info.name} has layers 0..{info.num_layers - 1}"
            )
        if s.kind == "head" and not 0 <= s.head < info.num_heads:
            raise _bad(s.spec, f"head {s.head} out of range: {info.name} has heads 0..{info.num_heads - 1}")
        if s.kind == "cell" and info.extra.get("cell", "lstm") != "lstm":
            raise _bad(
                s.spec,
                f"{info.name} is a {str(info.extra.get('cell')).upper()}: it has no cell state (use hidden:)",
            )
        if s.kind in ("cell", "hidden"):
            sizes = info.extra.get("layer_sizes") or [info.hidden_size] * info.num_layers
            if not 0 <= s.unit < sizes[s.layer]:
                raise _bad(
                    s.spec, f"unit {s.unit} out of range: layer {s.layer} has units 0..{sizes[s.layer] - 1}"
                )
        if s.kind == "context" and info.context_size and s.width > info.context_size:
            raise _bad(
                s.spec,
                f"{info.name} sees at most {info.context_size} tokens: W must be {info.context_size} or less",
            )
        if s.kind == "mask" and any(o.kind == "context" for o in specs):
            raise _bad(s.spec, "a masked span and a context window cannot be combined")


def to_manifest(specs: Sequence[Intervention]) -> list[dict]:
    """What the trace manifest holds: each spec's text and its fields."""
    out = []
    for s in specs:
        fields = {k: v for k, v in vars(s).items() if k != "kind"}
        out.append({"spec": s.spec, "kind": s.kind, **fields})
    return out


def from_manifest(items: Iterable[dict | str] | None) -> tuple[Intervention, ...]:
    """The specs a manifest recorded (each item's `spec` text is what counts)."""
    texts = [item if isinstance(item, str) else str(item.get("spec", "")) for item in items or ()]
    return parse_all(texts)


def describe(specs: Sequence[Intervention]) -> str:
    return ", ".join(s.spec for s in specs)
