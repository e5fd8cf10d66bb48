"""The training corpus: plain text (or .gz), split into a training part and a held-out part."""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

from memviz.errors import MemvizError

DEFAULT_CORPUS = "/usr/share/info/python3.11.info.gz"  # Debian's python3.11-doc (PSF license)
HELD_OUT_FRACTION = 0.05
# Texinfo's node separators and other control characters carry no language: drop them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass
class Corpus:
    train: str
    held_out: str
    source: str


def read_corpus(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise MemvizError(
            f"corpus not found: {path} (on Debian/Ubuntu: apt-get install python3.11-doc, "
            f"then use {DEFAULT_CORPUS})"
        )
    raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    text = _CONTROL.sub("", raw.decode("utf-8", errors="replace"))
    if len(text) < 10_000:
        raise MemvizError(f"{path}: corpus too small ({len(text)} characters; need at least 10,000)")
    return text


def split_corpus(text: str, held_out_fraction: float = HELD_OUT_FRACTION) -> tuple[str, str]:
    """Hold out every 20th block of 50k characters: the held-out part spans the whole document."""
    block = 50_000
    every = max(2, round(1 / held_out_fraction))
    train, held = [], []
    for i, start in enumerate(range(0, len(text), block)):
        (held if i % every == every - 1 else train).append(text[start : start + block])
    if not held:  # a short corpus: its tail
        cut = int(len(text) * (1 - held_out_fraction))
        return text[:cut], text[cut:]
    return "".join(train), "".join(held)


def load_corpus(path: str | Path) -> Corpus:
    train, held = split_corpus(read_corpus(path))
    return Corpus(train=train, held_out=held, source=str(path))
