"""The heatmap and the plumbing the data panels share, by the names the panels import.

Issue 14 split this module (880 lines) by job; each name lives in its own module now and is
re-exported here, so `from memviz.panels.heatmap import ...` keeps working:

- heatmap_item.py: `Heatmap` (one heatmap with its colour bar, cursor, outline, hover and click),
  `heatmaps_of`, `stable_extent`;
- heatmap_image.py: its cells' pixels (`native_lookup_table`, `colour`, `CellImage`);
- pixmap_axis.py: axes (`PixmapAxis`, `TokenAxis`, `pixmap_axes`, tick spacing that fits);
- plot_labels.py: `Labels`, `fit_label`, `elide_label`;
- plot_style.py: the theme on plots (`style_plot`, `style_axis`, `theme_font`), `add_static_plot`,
  `MIN_VIEW`;
- token_text.py: `candidate_text`, `show_token`, `token_label`;
- graphics_panel.py: `GraphicsPanel` (the base of the pyqtgraph panels), `FittedCanvas`, `clamp`.
"""

from __future__ import annotations

from memviz.panels.graphics_panel import FittedCanvas, GraphicsPanel, clamp
from memviz.panels.heatmap_image import CellImage, colour, native_lookup_table
from memviz.panels.heatmap_item import Heatmap, heatmaps_of, stable_extent
from memviz.panels.pixmap_axis import (
    PixmapAxis,
    TokenAxis,
    fit_ticks,
    fitted_spacing,
    label_room,
    pixmap_axes,
)
from memviz.panels.plot_labels import Labels, elide_label, fit_label
from memviz.panels.plot_style import MIN_VIEW, add_static_plot, style_axis, style_plot, theme_font
from memviz.panels.token_text import candidate_text, show_token, token_label

__all__ = [
    "MIN_VIEW",
    "CellImage",
    "FittedCanvas",
    "GraphicsPanel",
    "Heatmap",
    "Labels",
    "PixmapAxis",
    "TokenAxis",
    "add_static_plot",
    "candidate_text",
    "clamp",
    "colour",
    "elide_label",
    "fit_label",
    "fit_ticks",
    "fitted_spacing",
    "heatmaps_of",
    "label_room",
    "native_lookup_table",
    "pixmap_axes",
    "show_token",
    "stable_extent",
    "style_axis",
    "style_plot",
    "theme_font",
    "token_label",
]
