"""Errors a user can cause and fix. The CLI prints their message on one line and exits 2."""

import sys


class MemvizError(Exception):
    """Bad input from the user: a missing file, a broken checkpoint, an invalid option."""


class CheckpointError(MemvizError):
    """A model folder that cannot be loaded safely."""


def warn(message: str) -> None:
    """A warning for the user of a command: one line on stderr."""
    print(f"memviz: warning: {message}", file=sys.stderr)
