"""The panel contract. A panel is a view: given (trace, view state) it draws; it never calls the model.

The same class renders on screen (inside a dock) and offscreen for export, so a figure looks
like the screen.
"""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels.view_model import ViewModel


class Panel(QWidget):
    #: short id used by `memviz export --panel NAME` and by saved layouts
    name: str = "panel"
    #: human title for the dock and for figure titles
    title: str = "Panel"
    #: architectures this panel can show ("lstm", "gpt2"); empty = any
    architectures: tuple[str, ...] = ()
    #: kinds of model this panel can show ("transformer": any family with attention), besides those
    kinds: tuple[str, ...] = ()

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.trace: Trace | None = None

    @classmethod
    def supports(cls, trace: Trace) -> bool:
        if not cls.architectures and not cls.kinds:
            return True
        return trace.architecture in cls.architectures or trace.kind in cls.kinds

    def set_trace(self, trace: Trace | None) -> None:
        """A new run (or a loaded one): forget cached drawings."""
        self.trace = trace

    def render(self, state: ViewState) -> None:
        """Draw the trace at state.cursor. Called on the UI thread after new steps or view changes.

        Must be cheap: target well under 16 ms at T = 1024 for GPT-2 small's 12 x 12 heads.
        """
        raise NotImplementedError

    def apply_theme(self, state: ViewState) -> None:
        """Restyle for state.theme_obj (background, fonts)."""

    def figure_title(self, state: ViewState) -> str:
        """Title for exported figures: model, step and token."""
        trace = self.trace
        if trace is None or state.cursor < 0 or state.cursor >= len(trace):
            return self.title
        token = trace.token_label(state.cursor).replace("\n", "\\n")
        return f"{self.title} - {trace.model.get('name', '?')} - step {state.cursor} '{token}'"
