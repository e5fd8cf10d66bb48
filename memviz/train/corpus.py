"""The training corpus: one or more sources of text, each split into a training and a held-out part.

A source is a file (plain text, `.gz`, a Debian `.info.gz`, `.html`/`.htm`, optionally gzipped), a
directory (its readable files, recursively, in sorted order) or a glob pattern (expanded here, sorted:
quote it so the shell leaves it alone). A source's files are joined and split alone, so adding a
source never moves another's held-out blocks: a single file splits exactly as it did before sources
could be several.
"""

from __future__ import annotations

import glob
import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

from memviz.errors import MemvizError
from memviz.train.html_text import html_to_text

DEFAULT_CORPUS = "/usr/share/info/python3.11.info.gz"  # Debian's python3.11-doc (PSF license)
HELD_OUT_FRACTION = 0.05
MIN_CHARACTERS = 10_000
BLOCK = 50_000
# Texinfo's node separators and other control characters carry no language: drop them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_HTML = (".html", ".htm")
_TEXT = (".txt", ".text", ".info", ".md", ".rst", ".pod")
_INFO_PART = re.compile(r"\.info(-\d+)?$")  # coreutils.info, find.info-1


Sources = str | Path | list[str] | list[Path] | tuple[str | Path, ...]


@dataclass(frozen=True)
class SourcePart:
    """One source's share: where it came from, its files and its characters on each side of the split."""

    source: str
    files: int
    train_chars: int
    held_out_chars: int


@dataclass
class Corpus:
    train: str
    held_out: str
    source: str
    parts: list[SourcePart] = field(default_factory=list)


def _readable(path: Path) -> bool:
    name = path.name.lower()
    base = name[:-3] if name.endswith(".gz") else name
    return base.endswith(_HTML + _TEXT) or bool(_INFO_PART.search(base))


def source_files(source: str | Path) -> list[Path]:
    """The files a source names: itself, a directory's readable files, or a glob's matches (sorted)."""
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _readable(p))
    elif glob.has_magic(str(source)):
        files = sorted(Path(p) for p in glob.glob(str(source), recursive=True) if Path(p).is_file())
    else:
        files = []
    if not files:
        raise MemvizError(
            f"corpus not found: {source} (on Debian/Ubuntu: apt-get install python3.11-doc, "
            f"then use {DEFAULT_CORPUS})"
        )
    return files


def read_file_text(path: Path) -> str:
    """A file's text: gunzipped, HTML reduced to its text, control characters dropped."""
    raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    base = path.name.lower().removesuffix(".gz")
    if base.endswith(_HTML):
        text = html_to_text(text)
    return _CONTROL.sub("", text)


def read_source(source: str | Path) -> tuple[str, int]:
    """A source's text (its files joined by a blank line) and how many files it had."""
    files = source_files(source)
    return "\n\n".join(read_file_text(p) for p in files), len(files)


def read_corpus(path: str | Path) -> str:
    """One source's text; too small a corpus is an error."""
    text, _ = read_source(path)
    if len(text) < MIN_CHARACTERS:
        raise MemvizError(
            f"{path}: corpus too small ({len(text)} characters; need at least {MIN_CHARACTERS:,})"
        )
    return text


def split_corpus(text: str, held_out_fraction: float = HELD_OUT_FRACTION) -> tuple[str, str]:
    """Hold out every 20th block of 50k characters: the held-out part spans the whole document."""
    every = max(2, round(1 / held_out_fraction))
    train, held = [], []
    for i, start in enumerate(range(0, len(text), BLOCK)):
        (held if i % every == every - 1 else train).append(text[start : start + BLOCK])
    if not held:  # a short corpus: its tail
        cut = int(len(text) * (1 - held_out_fraction))
        return text[:cut], text[cut:]
    return "".join(train), "".join(held)


def load_corpus(sources: Sources) -> Corpus:
    """Every source split alone; the training parts (and the held-out parts) joined in the given order."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    if not sources:
        raise MemvizError("no corpus given")
    trains, helds, parts = [], [], []
    for source in sources:
        text, n_files = read_source(source)
        train, held = split_corpus(text)
        trains.append(train)
        helds.append(held)
        parts.append(SourcePart(str(source), n_files, len(train), len(held)))
    total = sum(p.train_chars + p.held_out_chars for p in parts)
    if total < MIN_CHARACTERS:
        raise MemvizError(
            f"{', '.join(map(str, sources))}: corpus too small ({total} characters; "
            f"need at least {MIN_CHARACTERS:,})"
        )
    # A blank line between sources, so one's last word never runs into the next one's first.
    return Corpus(
        train="\n\n".join(trains),
        held_out="\n\n".join(helds),
        source=" + ".join(map(str, sources)),
        parts=parts,
    )


def describe(corpus: Corpus) -> list[dict]:
    """The corpus' composition for training.json."""
    return [
        {
            "source": p.source,
            "files": p.files,
            "train_chars": p.train_chars,
            "held_out_chars": p.held_out_chars,
        }
        for p in corpus.parts
    ]
