"""What a figure or a session shows, with no Qt: the selected step, layer, head and unit (ViewState),
and the two looks, "dark" for the screen and "talk" (light, larger fonts) for slides (Theme).

The app, export and session files share these; the Qt side (ViewModel) lives in memviz.panels.
"""

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


# how heatmaps choose their colour levels: "stable" (levels only grow during a run: colours never
# shift as steps come), "fixed" (the quantity's natural range over the whole trace), "step" (each
# step's own range, as before)
SCALES: tuple[str, ...] = ("stable", "fixed", "step")

# what the panels are fed while two runs are compared (memviz.core.trace_diff): "b" the run on
# screen, "a" the run it is compared with (a saved trace, or an intervention's baseline), "diff" B - A
COMPARE_MODES: tuple[str, ...] = ("b", "a", "diff")


@dataclass(frozen=True)
class ViewState:
    cursor: int = -1  # the step shown; -1 = no step yet
    layer: int = 0
    head: int = 0
    unit: int = 0  # selected LSTM unit (row of the cell/hidden heatmaps)
    signal: str = "attention"  # what tints the token strip: "attention", "unit", "memory", "none"
    follow: bool = True  # cursor follows the newest step while the model runs
    theme: str = "dark"
    scale: str = "stable"  # colour scale of the heatmaps: one of SCALES
    compare: str = "b"  # with a comparison: what the panels show, one of COMPARE_MODES

    @property
    def theme_obj(self) -> Theme:
        return THEMES[self.theme]
