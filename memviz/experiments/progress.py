"""Progress of an experiment on stderr: one line rewritten in place on a terminal, a line now and
then elsewhere (a log). `progress_of(args)` gives the command's reporter, or a silent one."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False, every_s: float = 5.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self._last = 0.0
        self._open_line = False

    def __call__(self, label: str, done: int, total: int) -> None:
        """`label`: what is being measured ("gpt2: distance 64"); done of total units so far."""
        if self.quiet:
            return
        now = time.monotonic()
        finished = done >= total
        if not self.terminal and not finished and now - self._last < self.every_s:
            return
        self._last = now
        text = f"{label}: {done}/{total}"
        if self.terminal:
            self.stream.write(f"\r\033[K{text}")
            self._open_line = True
            if finished:
                self.stream.write("\n")
                self._open_line = False
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        if self.quiet:
            return
        self.end_line()
        self.stream.write(f"{message}\n")
        self.stream.flush()

    def end_line(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False


def silent(label: str, done: int, total: int) -> None:
    pass


def progress_of(args) -> Progress:
    return getattr(args, "progress", None) or Progress(quiet=True)
