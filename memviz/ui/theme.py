"""The two looks: "dark" for the screen, "talk" (light, larger fonts) for slides."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Theme:
    name: str
    background: str
    foreground: str
    panel_background: str
    accent: str  # the current step, the selected unit/head
    generated: str  # tint for generated tokens
    font_size: int  # points, for axis labels and text
    title_size: int

    @property
    def is_dark(self) -> bool:
        return self.name == "dark"


THEMES: dict[str, Theme] = {
    "dark": Theme("dark", "#1e1f22", "#dcdcdc", "#26282c", "#ffb000", "#7fd4ff", 10, 12),
    "talk": Theme("talk", "#ffffff", "#111111", "#ffffff", "#d62728", "#1f77b4", 14, 18),
}
