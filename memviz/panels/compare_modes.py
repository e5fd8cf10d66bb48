"""What each panel shows while two runs are compared (ViewState.compare: A, B or B - A).

In A and B every panel draws that run. In B - A a panel is fed the difference of the two runs
(memviz.core.trace_diff.TraceDiff) when its quantity has one (DIFFERENCE_PANELS: it draws the
difference as it draws a run, its heatmaps coloured around zero, see scales.py), a variant made for
it (DIFFERENCE_VARIANTS: the head grid's bars grow up and down), or a placeholder that says why there
is no difference (NO_DIFFERENCE): never a number that is not B - A. The Compare panel is itself a
comparison: it always reads B and its baseline.
"""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels.base import Panel
from memviz.panels.view_model import ViewModel

# panels whose quantities subtract (states, gates, attention, distances, the lens' target p)
DIFFERENCE_PANELS = frozenset({"attention", "head-distance", "logit-lens", "gates", "state"})
# panels that compare by themselves: fed B (with its baseline) in every mode
ALWAYS_B = frozenset({"compare"})
NO_DIFFERENCE = {
    "distribution": "The next-token distributions of two runs rank different candidates: "
    "their top-k has no difference. Show A or B, or read the Compare panel (log p of the next token).",
    "memory": "The memories two runs recall are different entries: they have no difference. Show A or B.",
    "span": "Working-memory span is a product of forget gates, not a difference of them: "
    "show A or B (the gates panel shows B \u2212 A of the gates).",
    "prediction": "A classifier's prediction is shown for A or B (its panel plots probabilities 0..1).",
}
DIFFERENT_MODELS = (
    "A ({a}) and B ({b}) are different models: their internal states have no difference. "
    "The Compare panel and the diff strip compare what they predict."
)
NO_REASON = "This panel has no B \u2212 A view: show A or B."


class PlaceholderPanel(Panel):
    """Stands in for a panel in the B - A view: the panel's name and title, and why it shows nothing."""

    reason = NO_REASON
    original: type[Panel] | None = None

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        layout = QVBoxLayout(self)
        self.label = QLabel(self.reason)
        self.label.setObjectName("comparePlaceholder")
        self.label.setWordWrap(True)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.label)
        self.apply_theme(view.state)

    @classmethod
    def supports(cls, trace: Trace) -> bool:
        return cls.original.supports(trace) if cls.original is not None else True

    def render(self, state: ViewState) -> None:
        """Nothing to draw: the reason stays."""

    def apply_theme(self, state: ViewState) -> None:
        theme = state.theme_obj
        self.setStyleSheet(
            f"background: {theme.panel_background}; color: {theme.foreground}; "
            f"font-size: {theme.font_size + 1}pt; padding: 18px;"
        )

    def figure_title(self, state: ViewState) -> str:
        return f"{self.title} (B \u2212 A): not shown"


@cache
def placeholder_for(cls: type[Panel], reason: str) -> type[Panel]:
    """A placeholder class standing in for `cls` (same name and title, so its dock stays)."""
    return type(
        f"{cls.__name__}Placeholder",
        (PlaceholderPanel,),
        {"name": cls.name, "title": cls.title, "reason": reason, "original": cls},
    )


def difference_variants() -> dict[str, type[Panel]]:
    from memviz.panels.head_grid_diff import HeadGridDiffPanel

    return {"heads": HeadGridDiffPanel}


def panel_class_for(
    cls: type[Panel], mode: str, same_model: bool = True, names: tuple[str, str] = ("A", "B")
) -> type[Panel]:
    """The class that shows `cls`'s place in a view mode ("a", "b", "diff")."""
    original = getattr(cls, "original", None) or getattr(cls, "plain", None) or cls
    if mode != "diff" or original.name in ALWAYS_B:
        return original
    if not same_model:
        return placeholder_for(original, DIFFERENT_MODELS.format(a=names[0], b=names[1]))
    variant = difference_variants().get(original.name)
    if variant is not None:
        return variant
    if original.name in DIFFERENCE_PANELS:
        return original
    return placeholder_for(original, NO_DIFFERENCE.get(original.name, NO_REASON))


def fed_trace(name: str, mode: str, trace: Trace | None, difference=None):
    """What a panel named `name` draws in `mode`: B (`trace`), its baseline A, or `difference`."""
    if trace is None or name in ALWAYS_B or mode == "b":
        return trace
    if mode == "a":
        return getattr(trace, "baseline", None) or trace
    return difference if difference is not None else trace
