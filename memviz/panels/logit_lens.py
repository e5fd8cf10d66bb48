"""The logit lens: how sure each layer already is of the token that came next (layers x steps).

Cell (layer l, step s) is `lens_target_prob[s, l]`: the probability of step s+1's token when the
residual stream after block l goes through the model's final norm and unembedding
(backends/logit_lens.py). Rows are layers (0 at the top, as in the attention-distance panel),
columns the steps up to the cursor; the last layer is the model's own prediction. The step still
waiting for its next token (a live run's last one) is blank: its column is filled when the next
step comes, so the picture is coloured afresh at each render (L x T cells: cheap).
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtWidgets import QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels import colormaps
from memviz.panels.heatmap import GraphicsPanel, Heatmap, candidate_text, clamp, show_token, token_label
from memviz.panels.hover import HoverReadout, heatmap_source
from memviz.panels.outline import use_contrast_outline
from memviz.panels.token_axis import LabelledTokenAxis, UnitAxis, replace_axis
from memviz.panels.token_labels import live_labels
from memviz.panels.view_model import ViewModel

TARGET = "lens_target_prob"
TOP_IDS, TOP_PROBS = "lens_topk_ids", "lens_topk_probs"
TOOLTIP_CANDIDATES = 3  # the tooltip lists this many of the layer's best guesses


def lens_layers(trace: Trace | None) -> int:
    """Layers the lens reads in `trace` (0 without a lens or before its first step)."""
    if trace is None or not trace.has(TARGET):
        return 0
    column = trace.array(TARGET)
    return int(column.shape[1]) if column.ndim == 2 else 0


class LogitLensPanel(GraphicsPanel):
    name = "logit-lens"
    title = "Logit lens"
    architectures = ()  # any model traced with --logit-lens (see supports)

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.finish_controls()
        self.setToolTip(
            "The logit lens: each layer's output read through the model's final norm and unembedding. "
            "Colour = the probability that layer gives the token that actually came next (rows: layers, "
            "0 at the top, the last one is the model's own prediction; columns: steps up to the cursor). "
            "Click a cell to go to that step and layer."
        )
        self.heatmap = Heatmap(
            cmap=colormaps.SEQUENTIAL,
            levels=(0.0, 1.0),
            x_label="step",
            y_label="layer",
            title="p(next token) after each layer",
            invert_y=True,
            x_tokens=True,
            value_name="p",
            grows=(False, True),
        )
        self.step_axis = replace_axis(self.heatmap, "bottom", LabelledTokenAxis("bottom"))
        self.layer_axis = replace_axis(self.heatmap, "left", UnitAxis("left"))
        use_contrast_outline(self.heatmap)
        self.heatmap.tooltip_fn = self._tooltip
        self.heatmap.clicked.connect(lambda row, col: self.view.update(cursor=col, layer=row, follow=False))
        self.canvas.ci.addItem(self.heatmap)
        self.step = -1
        self.readout = HoverReadout(self)
        self.readout.add(heatmap_source(self.heatmap, self._readout))
        self.apply_theme(view.state)

    @classmethod
    def supports(cls, trace: Trace) -> bool:
        return trace.has(TARGET)

    # -- text -------------------------------------------------------------------------------
    def _next_label(self, step: int) -> str | None:
        """The token that came after `step` (None: not known yet)."""
        tokens = live_labels(self.trace)
        return tokens[step + 1] if step + 1 < len(tokens) else None

    def _guesses(self, layer: int, step: int, count: int) -> list[tuple[str, float]]:
        """The layer's `count` likeliest next tokens at `step`, best first (none where it has no lens)."""
        trace = self.trace
        if trace is None or not trace.has(TOP_IDS):
            return []
        ids, probs = trace.array(TOP_IDS)[step, layer], trace.array(TOP_PROBS)[step, layer]
        return [
            (candidate_text(trace, int(i)), float(p))
            for i, p in zip(ids[:count], probs[:count], strict=True)
            if i >= 0
        ]

    def _readout(self, row: int, col: int, value: float) -> str:
        """One line: "layer 3, step 41 'def': p(next 'read') = 0.372; top-1 'return' 0.41"."""
        tokens = live_labels(self.trace)
        here = f" '{show_token(tokens[col], 24)}'" if col < len(tokens) else ""
        following = self._next_label(col)
        if following is None or math.isnan(value):
            target = "next token not known yet"
        else:
            target = f"p(next '{show_token(following, 24)}') = {value:.3f}"
        guesses = self._guesses(row, col, 1)
        best = f"top-1 '{show_token(guesses[0][0], 24)}' {guesses[0][1]:.2f}" if guesses else "no lens here"
        return f"layer {row}, step {col}{here}: {target}; {best}"

    def _tooltip(self, row: int, col: int, value: float) -> str:
        tokens = live_labels(self.trace)
        following = self._next_label(col)
        lines = [f"layer {row}, step {token_label(tokens, col)}"]
        if following is None or math.isnan(value):
            lines.append("next token: not known yet")
        else:
            lines.append(f"p(next '{show_token(following, 24)}') = {value:.6f}")
        for rank, (text, p) in enumerate(self._guesses(row, col, TOOLTIP_CANDIDATES), start=1):
            lines.append(f"top-{rank} '{show_token(text, 24)}' {p:.4f}")
        return "\n".join(lines)

    # -- drawing ----------------------------------------------------------------------------
    def set_trace(self, trace: Trace | None) -> None:
        super().set_trace(trace)
        self.heatmap.set_axis_tokens(live_labels(trace))
        self.heatmap.set_data(self.heatmap.data[:0, :0])
        self.layer_axis.set_order(np.arange(lens_layers(trace)))
        self.step = -1

    def render(self, state: ViewState) -> None:
        trace = self.trace
        if trace is None or len(trace) == 0 or state.cursor < 0 or not trace.has(TARGET):
            return
        layers = lens_layers(trace)
        t = clamp(state.cursor, len(trace))
        self.step = t
        self.layer_axis.set_order(np.arange(layers))
        # [L, t+1]; every cell coloured again: the previous step's column was filled since
        self.heatmap.set_data(trace.array(TARGET)[: t + 1].T, levels=(0.0, 1.0))
        self.heatmap.set_cursor_col(t)
        self.heatmap.set_highlight_cell((clamp(state.layer, layers), t))
        self.step_axis.grew(t + 1)
        self.note.setText(f"steps 0..{token_label(live_labels(trace), t)}")

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        if hasattr(self, "heatmap"):
            self.heatmap.apply_theme(state.theme_obj)
