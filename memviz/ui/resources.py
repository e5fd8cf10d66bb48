"""Files from resources/ (style sheets, icons), found in the installed package or a source checkout."""

from __future__ import annotations

from pathlib import Path


def resource_path(name: str) -> Path | None:
    """A file from resources/: inside the installed package, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent.parent  # memviz/
    for root in (here / "resources", here.parent / "resources"):
        candidate = root / name
        if candidate.is_file():
            return candidate
    return None


def style_sheet(theme: str) -> str:
    path = resource_path(f"style_{theme}.qss")
    return path.read_text(encoding="utf-8") if path else ""
