"""GPT-2 attention of the selected layer and head: query x key heatmap, the current query row outlined."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels import colormaps
from memviz.panels.attention_cache import AttentionCache
from memviz.panels.heatmap import GraphicsPanel, Heatmap, clamp, show_token, token_label
from memviz.panels.hover import HoverReadout, heatmap_source
from memviz.panels.outline import use_contrast_outline
from memviz.panels.token_axis import LabelledTokenAxis, replace_axis
from memviz.panels.token_labels import live_labels
from memviz.panels.view_model import ViewModel


def attention_shape(trace: Trace) -> tuple[int, int]:
    """(layers, heads) of a trace with attention; (0, 0) for one without."""
    return trace.attention_shape or (0, 0)


def shows_attention(trace: Trace | None) -> bool:
    """A run with attention, even before its first step (its shape comes from the manifest)."""
    return trace is not None and trace.attention_shape is not None


class AttentionPanel(GraphicsPanel):
    name = "attention"
    title = "Attention"
    architectures = ("gpt2",)
    kinds = ("transformer",)  # every transformers family (the trace's kind)

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.add_spin("layer", "layer")
        self.add_spin("head", "head")
        self.finish_controls()
        self.setToolTip(
            "Attention of one head: row = the token reading (query), column = the token it looks at (key). "
            "Each row sums to 1; the outlined row is the current step. Click a row to go to that step."
        )
        self.heatmap = Heatmap(
            cmap=colormaps.SEQUENTIAL,
            levels=(0.0, 1.0),
            x_label="key (attended to)",
            y_label="query (reading)",
            invert_y=True,
            x_tokens=True,
            y_tokens=True,
            value_name="attention",
            grows=(True, True),
        )
        for side in ("bottom", "left"):
            replace_axis(self.heatmap, side, LabelledTokenAxis(side))
        use_contrast_outline(self.heatmap)
        self.heatmap.tooltip_fn = self._tooltip
        self.heatmap.clicked.connect(lambda row, col: self.view.update(cursor=row, follow=False))
        self.canvas.ci.addItem(self.heatmap)
        self.layer = self.head = 0
        self.step = -1
        self._shown = (-1, -1, -1)  # layer, head and step on screen
        self.matrices = AttentionCache()
        self.readout = HoverReadout(self)
        self.readout.add(heatmap_source(self.heatmap, self._readout))
        self.apply_theme(view.state)

    def _readout(self, row: int, col: int, value: float) -> str:
        """One line: "query 41 'def' -> key 12 'read': 0.372"."""
        tokens = live_labels(self.trace)

        def named(i: int) -> str:
            return f"{i} '{show_token(tokens[i], 24)}'" if i < len(tokens) else str(i)

        return f"query {named(row)} \u2192 key {named(col)}: {value:.3f}"

    def _tooltip(self, row: int, col: int, value: float) -> str:
        tokens = live_labels(self.trace)
        return (
            f"layer {self.layer}, head {self.head}\nquery {token_label(tokens, row)}\n"
            f"key {token_label(tokens, col)}\nattention = {value:.6f}"
        )

    def set_trace(self, trace: Trace | None) -> None:
        super().set_trace(trace)
        self.heatmap.set_axis_tokens(live_labels(trace))
        self.heatmap.set_data(self.heatmap.data[:0, :0])
        self.step = -1
        self._shown = (-1, -1, -1)
        self.matrices = AttentionCache()

    def render(self, state: ViewState) -> None:
        trace = self.trace
        if trace is None or len(trace) == 0 or state.cursor < 0 or not trace.has("attention"):
            return
        layers, heads = attention_shape(trace)
        t = clamp(state.cursor, len(trace))
        self.layer = layer = clamp(state.layer, layers)
        self.head = head = clamp(state.head, heads)
        self.step = t
        self.sync_spin("layer", layer, layers - 1)
        self.sync_spin("head", head, heads - 1)
        # rows of earlier steps never change: with the same head, only the new row and column are coloured
        same_head = self._shown[:2] == (layer, head)
        keep = (min(self._shown[2], t) + 1,) * 2 if same_head else None
        self.heatmap.set_data(self.matrices.matrix(trace, layer, head, stop=t + 1), keep=keep)
        self._shown = (layer, head, t)
        self.heatmap.set_highlight_row(t)
        for side in ("bottom", "left"):
            self.heatmap.plot.getAxis(side).grew(t + 1)
        self.note.setText(f"layer {layer}  head {head}  query {token_label(live_labels(trace), t)}")

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        if hasattr(self, "heatmap"):
            self.heatmap.apply_theme(state.theme_obj)
