"""Figures: a Panel rendered offscreen from a Trace and a ViewState, to PNG, SVG or PDF.

The same panel classes as on screen are drawn, so a figure looks like the screen. pyqtgraph's own
SVGExporter fails with Qt 6.12 (pyqtgraph #3485), so the panel is painted with a QPainter straight
into a QSvgGenerator or a QPdfWriter, both at 96 dpi (the widget's): at QSvgGenerator's default 72
or QPdfWriter's 1200 the axes shrink or swell and stop lining up with the heatmap. Tick and axis
labels come out as real text (`<text>` in SVG, embedded fonts in PDF), heatmaps as embedded images.

A figure is a title band (`Panel.figure_title`: model, step, token) above the panel's canvas. The
panel's row of controls (spin boxes) is left out: the title says what they say. A panel can choose
what is drawn by defining `export_widget()` (returning the QWidget to paint); otherwise its
`canvas` (a QGraphicsView) is painted, or else the whole panel.

Its parts (issue 14: one job a module): offscreen.py (the QApplication), panel_lookup.py (which
panel), out_files.py (the file: format, path, writing), writers.py (PNG, SVG and PDF bytes),
scene_paint.py (a view painted item by item), svg_post.py (the SVG made viewer-proof). Their public
names are importable from here too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from memviz.core.trace import Trace
from memviz.errors import MemvizError
from memviz.export import writers
from memviz.export.offscreen import ensure_app, process_events
from memviz.export.out_files import (
    FORMATS,
    check_out_path,
    format_from_path,
    safe_file_name,
    write_bytes,
)
from memviz.export.panel_lookup import all_panel_classes, panel_class, supported_panel_classes
from memviz.export.scene_paint import paint_view
from memviz.export.svg_post import _matrix, postprocess_svg, postprocess_svg_text
from memviz.export.writers import DPI, _set_dpi

__all__ = [  # the names render.py had before the split, and its own
    "DEFAULT_SIZE",
    "DPI",
    "FORMATS",
    "FigureRenderer",
    "_matrix",
    "_set_dpi",
    "all_panel_classes",
    "check_out_path",
    "ensure_app",
    "export_all",
    "export_figure",
    "format_from_path",
    "paint_view",
    "panel_class",
    "postprocess_svg",
    "postprocess_svg_text",
    "process_events",
    "safe_file_name",
    "supported_panel_classes",
    "write_bytes",
]

DEFAULT_SIZE = (1280, 720)  # logical pixels; --scale 1.5 gives exactly a 1080p slide


# -- the renderer --------------------------------------------------------------------------------
class FigureRenderer:
    """One panel, offscreen, at a fixed size; `set_state` then `save` (or `image`), as often as needed.

    Reusing one renderer for many steps is how animations stay fast: the panel is built once.
    """

    def __init__(
        self, panel_cls, trace: Trace, state, size: tuple[int, int] | None = None, exact_fit: bool = True
    ) -> None:
        from PySide6.QtCore import Qt

        from memviz.panels.view_model import ViewModel

        ensure_app()
        self.trace = trace
        self.state = state
        self.view = ViewModel(state)
        self.panel = panel_cls(self.view)
        self.panel.setAttribute(
            Qt.WidgetAttribute.WA_DontShowOnScreen, True
        )  # never a window, on any platform
        from memviz.panels.heatmap_item import heatmaps_of

        for heatmap in heatmaps_of(
            self.panel
        ):  # a still figure ends at its data; an animation keeps one frame
            heatmap.exact_fit = exact_fit
            heatmap.settles = False  # a figure's view never waits for a run to settle
        self.panel.set_trace(trace)
        self.panel.apply_theme(state)
        self.size = tuple(size or DEFAULT_SIZE)
        self._laid_out = False
        self.set_state(state)

    # -- layout -----------------------------------------------------------------------------
    @property
    def theme(self):
        return self.state.theme_obj

    def title_font(self):
        from PySide6.QtGui import QFont

        font = QFont()
        font.setPointSize(self.theme.title_size)
        font.setBold(True)
        return font

    def title_height(self) -> int:
        from PySide6.QtGui import QFontMetrics

        # font metrics of the default (screen) device: 96 dpi on offscreen and on most screens
        return int(QFontMetrics(self.title_font()).height() * 1.6)

    def body_widget(self):
        from PySide6.QtWidgets import QGraphicsView

        hook = getattr(self.panel, "export_widget", None)
        if callable(hook):
            widget = hook()
            if widget is not None:
                return widget
        canvas = getattr(self.panel, "canvas", None)
        if isinstance(canvas, QGraphicsView):
            return canvas
        return self.panel

    def _layout(self) -> None:
        """Size the panel so that the body widget gets exactly the figure's size below the title."""
        width, height = self.size
        body_height = max(50, height - self.title_height())
        self.panel.resize(width, body_height)
        self.panel.show()
        process_events()
        body = self.body_widget()
        for _ in range(3):  # the controls take some height: grow the panel until the body fits
            extra_w = self.panel.width() - body.width()
            extra_h = self.panel.height() - body.height()
            if body.width() == width and body.height() == body_height:
                break
            self.panel.resize(width + extra_w, body_height + extra_h)
            process_events()
        self._laid_out = True

    def band_height(self) -> int:
        """The title band: at least the title's height, and what makes the figure exactly self.size."""
        return max(self.title_height(), self.size[1] - self.body_widget().height())

    def figure_size(self) -> tuple[int, int]:
        body = self.body_widget()
        return body.width(), self.band_height() + body.height()

    # -- drawing ----------------------------------------------------------------------------
    def set_state(self, state) -> None:
        theme_changed = state.theme != self.state.theme
        self.state = state
        self.view._state = state  # the panel's own view model, without waking its listeners
        if theme_changed:
            self.panel.apply_theme(state)
        if not self._laid_out:
            self._layout()
        self.panel.render(state)
        process_events(2)

    def title(self) -> str:
        try:
            return self.panel.figure_title(self.state)
        except Exception:  # a broken title must not lose the figure
            return getattr(self.panel, "title", "")

    def paint(self, painter) -> None:
        """Paint the figure at (0, 0) in logical (96 dpi) pixels."""
        from PySide6.QtCore import QPoint, QPointF, QRect, Qt
        from PySide6.QtGui import QColor, QFontMetricsF, QRegion
        from PySide6.QtWidgets import QGraphicsView, QWidget

        width, height = self.figure_size()
        theme = self.theme
        painter.fillRect(QRect(0, 0, width, height), QColor(theme.panel_background))
        title_h = self.band_height()
        painter.save()
        painter.setPen(QColor(theme.foreground))
        font = self.title_font()
        painter.setFont(font)
        # a narrow figure: the title's end gives way with an ellipsis, never cut mid-letter
        shown = QFontMetricsF(font).elidedText(self.title(), Qt.TextElideMode.ElideRight, width - 24)
        painter.drawText(
            QRect(12, 0, width - 24, title_h),
            int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
            shown,
        )
        painter.restore()
        body = self.body_widget()
        painter.save()
        if isinstance(body, QGraphicsView):
            paint_view(painter, body, QPointF(0, title_h))
        else:
            body.render(painter, QPoint(0, title_h), QRegion(), QWidget.RenderFlag.DrawChildren)
        painter.restore()

    def image(self, scale: float = 1.0):
        """The figure as a QImage, `scale` device pixels per logical pixel."""
        return writers.to_image(self, scale)

    def save(self, path: str | os.PathLike, fmt: str | None = None, scale: float = 1.0) -> Path:
        """Draw the figure into memory, then write the bytes beside `path` and rename them onto it.

        Qt's writers do not report every failed write (libpng prints its own "Write Error"; a
        truncated SVG only fails when read back): writing the bytes ourselves makes a full disk one
        clear error and keeps the previous file.
        """
        path = check_out_path(path)
        fmt = (fmt or format_from_path(path)).lower()
        if fmt == "png":
            data = self.png_bytes(scale)
        elif fmt == "svg":
            data = self.svg_bytes()
        elif fmt == "pdf":
            data = self.pdf_bytes()
        else:
            raise MemvizError(f"unknown figure format '{fmt}'; formats: {', '.join(FORMATS)}")
        write_bytes(path, data)
        return path

    def png_bytes(self, scale: float = 1.0) -> bytes:
        return writers.png_bytes(self, scale)

    def svg_bytes(self) -> bytes:
        return writers.svg_bytes(self)

    def pdf_bytes(self) -> bytes:
        return writers.pdf_bytes(self)

    def close(self) -> None:
        self.panel.hide()
        self.panel.deleteLater()
        process_events(1)


# -- one call ------------------------------------------------------------------------------------
def export_figure(
    trace: Trace,
    panel,
    state,
    out: str | os.PathLike,
    fmt: str | None = None,
    scale: float = 1.0,
    size: tuple[int, int] | None = None,
) -> Path:
    """Render one panel (a class or a name) at `state` into `out` (png, svg or pdf)."""
    cls = panel_class(panel, trace) if isinstance(panel, str) else panel
    renderer = FigureRenderer(cls, trace, state, size=size)
    try:
        return renderer.save(out, fmt=fmt, scale=scale)
    finally:
        renderer.close()


def export_all(
    trace: Trace,
    state,
    folder: str | os.PathLike,
    fmt: str = "png",
    scale: float = 1.0,
    size: tuple[int, int] | None = None,
    classes: Iterable | None = None,
) -> list[Path]:
    """Every panel that supports the trace, one file each (`<panel name>.<fmt>`) in `folder`."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MemvizError(f"--out {folder}: is a file; --all writes into a folder")
    if not folder.parent.is_dir():
        raise MemvizError(f"--out {folder}: folder {folder.parent} does not exist")
    folder.mkdir(exist_ok=True)
    panels = supported_panel_classes(trace, classes)
    if not panels:
        raise MemvizError(f"no panel shows {trace.architecture or 'this'} traces")
    return [
        export_figure(
            trace, cls, state, folder / f"{safe_file_name(cls.name)}.{fmt}", fmt=fmt, scale=scale, size=size
        )
        for cls in panels
    ]
