"""How far back each GPT-2 head looks: its mean attention distance, a layers x heads heatmap.

For a query at step t, a head's attention distance is the expected t - key under its attention row;
the panel shows the mean over queries 0..cursor (Trace.mean_attention_distance), kept as running
sums so that a step costs one row per head.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QWidget

from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.panels import colormaps
from memviz.panels.attention import attention_shape, shows_attention
from memviz.panels.heatmap import GraphicsPanel, Heatmap, Labels, clamp, theme_font, token_label
from memviz.panels.hover import HoverReadout, heatmap_source
from memviz.panels.outline import use_contrast_outline
from memviz.panels.token_labels import live_labels
from memviz.panels.view_model import ViewModel

MAX_LABELS = 256  # write the number in each cell up to this many heads


def distance_text(value: float) -> str:
    """A cell's label: one decimal while it fits (under 100 tokens back), whole tokens beyond."""
    return f"{value:.1f}" if value < 99.95 else f"{value:.0f}"


# every float16 bit pattern's float32 value: converting by lookup costs the same for every weight,
# where numpy's cast slows down on the float16 subnormals that attention is full of
_HALF_TO_SINGLE = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


def as_float32(row: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`row` (float16 or float32) written into `out` as float32, exactly."""
    if row.dtype == np.float16:
        np.take(_HALF_TO_SINGLE, row.view(np.uint16), out=out)
    else:
        np.copyto(out, row)
    return out


class DistanceSums:
    """Running sums over steps of each head's expected attention distance ([T, L, A], float32,
    added in the same order as Trace.mean_attention_distance).

    Both the sums and the float32 copy of a step's attention live in buffers that grow by doubling:
    allocating a fresh half-megabyte array every step cost more (page faults) than the arithmetic.
    """

    def __init__(self) -> None:
        self.cumulative = np.zeros((0, 0, 0), dtype=np.float32)
        self.done = 0
        self._row = np.zeros((0, 0, 0), dtype=np.float32)

    def _grow(self, upto: int, shape: tuple[int, int]) -> None:
        if len(self.cumulative) < upto:
            grown = np.zeros((1 << max(upto - 1, 63).bit_length(), *shape), dtype=np.float32)
            if self.done:
                grown[: self.done] = self.cumulative[: self.done]
            self.cumulative = grown
        if self._row.shape[-1] < upto:
            self._row = np.zeros((*shape, 1 << max(upto - 1, 63).bit_length()), dtype=np.float32)

    def mean(self, trace: Trace, upto: int) -> np.ndarray:
        if self.done < upto:
            self._grow(upto, attention_shape(trace))
            recorded = trace.array("attention_distance") if trace.has("attention_distance") else None
            for t in range(self.done, upto):
                if recorded is not None:  # recorded while the run went (a q/k trace rebuilds no row)
                    distance = recorded[t]
                else:
                    row = as_float32(trace.attention_rows_at(t), self._row[..., : t + 1])
                    distance = row @ (t - np.arange(t + 1, dtype=np.float32))
                self.cumulative[t] = distance if t == 0 else self.cumulative[t - 1] + distance
            self.done = upto
        return self.cumulative[upto - 1] / upto


class HeadDistancePanel(GraphicsPanel):
    name = "head-distance"
    title = "Attention distance"
    architectures = ("gpt2",)
    kinds = ("transformer",)  # every transformers family (the trace's kind)

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.finish_controls()
        self.setToolTip(
            "Each head's mean attention distance: how many tokens back it looks on average (the expected "
            "distance from the query to the keys under its attention, averaged over the steps read so far). "
            "A head's working-memory span. Click a head to select it."
        )
        self.heatmap = Heatmap(
            cmap="inferno",
            levels=(0.0, 1.0),
            x_label="head",
            y_label="layer",
            title="mean attention distance (tokens back)",
            invert_y=True,
            value_name="distance",
        )
        use_contrast_outline(self.heatmap)
        self.heatmap.tooltip_fn = self._tooltip
        self.heatmap.clicked.connect(lambda row, col: self.view.update(layer=row, head=col))
        self.canvas.ci.addItem(self.heatmap)
        self.sums = DistanceSums()
        self.labels = Labels(cell_width=1.0)
        self.heatmap.plot.addItem(self.labels, ignoreBounds=True)
        self.labels.setZValue(6)
        self.distance = np.zeros((0, 0))
        self.step = -1
        self.readout = HoverReadout(self)
        self.readout.add(
            heatmap_source(
                self.heatmap,
                lambda row, col, value: f"layer {row}, head {col}: {value:.2f} tokens back (mean)",
            )
        )
        self.apply_theme(view.state)

    def _tooltip(self, row: int, col: int, value: float) -> str:
        tokens = live_labels(self.trace)
        return (
            f"layer {row}, head {col}\nmean attention distance = {value:.4f} tokens back\n"
            f"over queries 0..{token_label(tokens, self.step)}"
        )

    def set_trace(self, trace: Trace | None) -> None:
        super().set_trace(trace)
        self.sums = DistanceSums()
        self.heatmap.set_data(self.heatmap.data[:0, :0])
        self.labels.set_items([])
        self.step = -1
        if not shows_attention(trace):
            return
        layers, heads = attention_shape(trace)
        plot = self.heatmap.plot
        plot.getAxis("left").setTicks([[(layer + 0.5, str(layer)) for layer in range(layers)]])
        plot.getAxis("bottom").setTicks([[(head + 0.5, str(head)) for head in range(heads)]])
        self._style_labels()

    def render(self, state: ViewState) -> None:
        trace = self.trace
        if trace is None or len(trace) == 0 or state.cursor < 0 or not trace.has("attention"):
            return
        layers, heads = attention_shape(trace)
        t = clamp(state.cursor, len(trace))
        self.step = t
        self.distance = self.sums.mean(trace, t + 1)
        top = colormaps.nice_ceiling(max(float(self.distance.max()), 1.0))
        self.heatmap.set_data(self.distance, levels=(0.0, top))
        self.heatmap.set_highlight_cell((clamp(state.layer, layers), clamp(state.head, heads)))
        if self.distance.size <= MAX_LABELS:
            dark = self.distance < 0.55 * top  # light text on the dark end of the map
            if self.heatmap.scale.difference:  # B - A, diverging: light text on the deep ends only
                dark = np.abs(self.distance) > 0.55 * self.heatmap.levels[1]
            self.labels.set_items(
                [
                    (
                        head + 0.5,
                        layer + 0.5,
                        distance_text(self.distance[layer, head]),
                        "#f0f0f0" if dark[layer, head] else "#111111",
                    )
                    for layer in range(layers)
                    for head in range(heads)
                ]
            )
        self.note.setText(f"queries 0..{token_label(live_labels(trace), t)}")

    def _style_labels(self) -> None:
        self.labels.font = theme_font(self.view.state.theme_obj, -2)
        self.labels.update()

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        if hasattr(self, "heatmap"):
            self.heatmap.apply_theme(state.theme_obj)
            self._style_labels()
