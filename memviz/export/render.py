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
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from memviz.core.trace import Trace
from memviz.errors import MemvizError
from memviz.paths import output_file, replacing

FORMATS = ("png", "svg", "pdf")
DEFAULT_SIZE = (1280, 720)  # logical pixels; --scale 1.5 gives exactly a 1080p slide
DPI = 96


# -- Qt ------------------------------------------------------------------------------------------
def ensure_app():
    """The QApplication, created on the offscreen platform when there is none (no window needed)."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        _quiet_offscreen_warnings()
        app = QApplication(["memviz-export"])
    return app


def _quiet_offscreen_warnings() -> None:
    """The offscreen platform warns on every shown widget ("does not support propagateSizeHints")."""
    from PySide6.QtCore import QtMsgType, qInstallMessageHandler

    def handler(kind, context, message: str) -> None:
        if "propagateSizeHints" in message:
            return
        if kind != QtMsgType.QtDebugMsg:
            sys.stderr.write(message + "\n")

    global _MESSAGE_HANDLER
    _MESSAGE_HANDLER = handler  # keep a reference: Qt holds only a pointer
    qInstallMessageHandler(handler)


_MESSAGE_HANDLER = None


def process_events(rounds: int = 3) -> None:
    from PySide6.QtWidgets import QApplication

    for _ in range(rounds):
        QApplication.processEvents()


# -- panels --------------------------------------------------------------------------------------
def all_panel_classes() -> list:
    from memviz.panels.registry import panel_classes

    return panel_classes()


def supported_panel_classes(trace: Trace, classes: Iterable | None = None) -> list:
    return [cls for cls in (all_panel_classes() if classes is None else classes) if cls.supports(trace)]


def panel_class(name: str, trace: Trace | None = None, classes: Iterable | None = None):
    """The panel class called `name`; a clear error naming the valid ones otherwise."""
    classes = list(all_panel_classes() if classes is None else classes)
    by_name = {cls.name: cls for cls in classes}
    if name not in by_name:
        valid = ", ".join(sorted(by_name)) or "none registered"
        raise MemvizError(f"unknown panel '{name}'; panels: {valid}")
    cls = by_name[name]
    if trace is not None and not cls.supports(trace):
        fits = ", ".join(c.name for c in classes if c.supports(trace)) or "none"
        raise MemvizError(
            f"panel '{name}' does not show {trace.architecture or 'this'} traces "
            f"(it shows {', '.join(cls.architectures)}); panels for this trace: {fits}"
        )
    return cls


def format_from_path(path: str | os.PathLike, allowed: Iterable[str] = FORMATS) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    suffix = {"jpeg": "jpg"}.get(suffix, suffix)
    allowed = tuple(allowed)
    if suffix not in allowed:
        raise MemvizError(
            f"{path}: cannot tell the format from the name; end it with "
            + ", ".join("." + f for f in allowed)
        )
    return suffix


def check_out_path(path: str | os.PathLike) -> Path:
    return output_file(path, "--out ")


def safe_file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "figure"


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
        from memviz.panels.heatmap import heatmaps_of

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
        from PySide6.QtCore import Qt
        from PySide6.QtGui import QImage, QPainter

        if not scale > 0:
            raise MemvizError(f"--scale must be more than 0, got {scale}")
        width, height = self.figure_size()
        image = QImage(round(width * scale), round(height * scale), QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        # Painted at the logical size onto a device with `scale` pixels per logical pixel: the same
        # layout as at scale 1, with more pixels. The device keeps the logical 96 dpi while painting:
        # at DPI * scale, point-sized fonts would grow by the scale on top of the pixel ratio (title
        # cut, axes off the image).
        image.setDevicePixelRatio(scale)
        _set_dpi(image, DPI)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        self.paint(painter)
        painter.end()
        _set_dpi(image, DPI * scale)  # the file's resolution: it prints at the scale-1 figure's size
        return image

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
        from PySide6.QtCore import QBuffer, QIODevice

        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        if not self.image(scale).save(buffer, "PNG"):
            raise MemvizError("cannot encode the PNG")
        return bytes(buffer.data())

    def svg_bytes(self) -> bytes:
        from PySide6.QtCore import QBuffer, QIODevice, QRect, QSize
        from PySide6.QtGui import QPainter
        from PySide6.QtSvg import QSvgGenerator

        width, height = self.figure_size()
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        generator = QSvgGenerator(QSvgGenerator.SvgVersion.Svg11)  # 1.1: clip paths (Tiny 1.2 drops them)
        generator.setOutputDevice(buffer)
        generator.setSize(QSize(width, height))
        generator.setViewBox(QRect(0, 0, width, height))
        generator.setResolution(DPI)
        generator.setTitle(self.title())
        generator.setDescription("memviz figure")
        painter = QPainter()
        if not painter.begin(generator):
            raise MemvizError("cannot draw the SVG")
        self.paint(painter)
        painter.end()
        return postprocess_svg_text(bytes(buffer.data()).decode("utf-8", errors="replace"))

    def pdf_bytes(self) -> bytes:
        from PySide6.QtCore import QBuffer, QIODevice, QMarginsF, QSizeF
        from PySide6.QtGui import QPageLayout, QPageSize, QPainter, QPdfWriter

        width, height = self.figure_size()
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        writer = QPdfWriter(buffer)
        writer.setResolution(DPI)
        writer.setCreator("memviz")
        writer.setTitle(self.title())
        page = QPageSize(
            QSizeF(width * 72 / DPI, height * 72 / DPI),
            QPageSize.Unit.Point,
            "memviz figure",
            QPageSize.SizeMatchPolicy.ExactMatch,
        )
        writer.setPageLayout(QPageLayout(page, QPageLayout.Orientation.Portrait, QMarginsF(0, 0, 0, 0)))
        painter = QPainter()
        if not painter.begin(writer):
            raise MemvizError("cannot draw the PDF")
        self.paint(painter)
        painter.end()
        del writer  # the writer flushes the document's end into the buffer
        return bytes(buffer.data())

    def close(self) -> None:
        self.panel.hide()
        self.panel.deleteLater()
        process_events(1)


def _set_dpi(image, dpi: float) -> None:
    image.setDotsPerMeterX(round(dpi / 0.0254))
    image.setDotsPerMeterY(round(dpi / 0.0254))


def paint_view(painter, view, origin) -> None:
    """Paint a QGraphicsView's visible scene with `painter`, its top left corner at `origin`.

    Item by item rather than with QGraphicsView.render: that sets an outer clip, and Qt 6.12's SVG
    engine, once an item has set a clip of its own inside it (pyqtgraph's axes clip their labels),
    keeps that inner clip after the painter's restore, so the next items (axis lines, ticks) vanish
    from the SVG. Here each item gets its ancestors' clip set afresh, with no clip around it.
    """
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QPainterPath, QTransform
    from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem

    flags = QGraphicsItem.GraphicsItemFlag
    scene = view.scene()
    prepare = getattr(scene, "prepareForPaint", None)  # pyqtgraph: auto ranges, lazy geometry
    if callable(prepare):
        prepare()
    to_device = view.viewportTransform() * QTransform.fromTranslate(origin.x(), origin.y())
    viewport = view.viewport().rect()
    painter.save()
    painter.setTransform(QTransform.fromTranslate(origin.x(), origin.y()))
    painter.fillRect(viewport, view.backgroundBrush())
    painter.restore()
    widget = view.viewport()
    for item in scene.items(Qt.SortOrder.AscendingOrder):
        if not item.isVisible() or item.flags() & flags.ItemHasNoContents:
            continue
        opacity = item.effectiveOpacity()
        if opacity <= 0:
            continue
        clip = QPainterPath()
        clip.addRect(viewport)  # device coordinates
        clip.translate(origin.x(), origin.y())
        owner = item if item.flags() & flags.ItemClipsToShape else item.parentItem()
        while owner is not None:
            if owner is item or owner.flags() & flags.ItemClipsChildrenToShape:
                clip = clip.intersected(owner.deviceTransform(to_device).map(owner.shape()))
            owner = owner.parentItem()
        painter.save()
        painter.setClipPath(clip)
        painter.setTransform(item.deviceTransform(to_device))
        painter.setOpacity(opacity)
        option = QStyleOptionGraphicsItem()
        option.exposedRect = item.boundingRect()
        item.paint(painter, option, widget)
        painter.restore()


_MATRIX = re.compile(r"matrix\(([^)]*)\)")
_PAIR = re.compile(r"(-?[0-9.]+(?:[eE][-+]?[0-9]+)?),(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SVG_NS = "http://www.w3.org/2000/svg"
_XLINK_NS = "http://www.w3.org/1999/xlink"


def _matrix(group) -> tuple[float, ...] | None:
    found = _MATRIX.fullmatch(group.get("transform", "").strip())
    if not found:
        return None
    values = tuple(float(v) for v in found.group(1).split(","))
    return values if len(values) == 6 else None


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` beside `path`, check every write and the close, then rename it onto `path`."""
    with replacing(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def postprocess_svg(path: Path) -> None:
    """`postprocess_svg_text` on a file, in place."""
    write_bytes(path, postprocess_svg_text(path.read_text(encoding="utf-8", errors="replace")))


def postprocess_svg_text(text: str) -> bytes:
    """Make the generator's SVG look the same in every viewer, not only in browsers.

    1. Qt writes cosmetic pens (1-2 px lines in a plot scaled to data units) as
       `vector-effect="non-scaling-stroke"` inside a scaled group; viewers without vector-effect
       (librsvg, Inkscape, slide software) draw them dozens of pixels wide. Such shapes get their
       coordinates mapped to figure pixels and move to an unscaled twin group.
    2. Heatmap cells are pixels of a small embedded image that viewers smooth when they scale it:
       the image is enlarged (nearest neighbour) to at least its size on the figure, so every cell
       keeps sharp edges in any viewer. The numbers are unchanged.
    """
    import xml.etree.ElementTree as ET

    ET.register_namespace("", _SVG_NS)
    ET.register_namespace("xlink", _XLINK_NS)
    # a token can be a control character (GPT-2's byte tokens); XML forbids them: show their picture
    text = _XML_INVALID.sub(lambda m: chr(0x2400 + ord(m.group())), text)
    root = ET.fromstring(text)
    tree = ET.ElementTree(root)
    svg = f"{{{_SVG_NS}}}"
    for parent in list(root.iter()):
        children = list(parent)
        for index in range(len(children) - 1, -1, -1):
            group = children[index]
            if group.tag != svg + "g":
                continue
            m = _matrix(group)
            if m is None or (m[0], m[1], m[2], m[3]) == (1.0, 0.0, 0.0, 1.0):
                continue
            for image in group.findall(svg + "image"):
                _sharpen_image(image, m)
            strokes = [
                c for c in group if c.get("vector-effect") == "non-scaling-stroke" and _bake(c, m, svg)
            ]
            if not strokes:
                continue
            twin = ET.Element(group.tag, {k: v for k, v in group.attrib.items() if k != "transform"})
            for shape in strokes:
                group.remove(shape)
                twin.append(shape)
            parent.insert(index + 1, twin)
    out = io.BytesIO()
    tree.write(out, encoding="UTF-8", xml_declaration=True)
    return out.getvalue()


def _bake(shape, m: tuple[float, ...], svg: str) -> bool:
    """Map one shape's coordinates through the matrix m (in place); False when it cannot be done."""
    a, b, c, d, e, f = m

    def point(x: float, y: float) -> tuple[float, float]:
        return a * x + c * y + e, b * x + d * y + f

    def pairs(text: str) -> str:
        return _PAIR.sub(lambda g: "{:.3f},{:.3f}".format(*point(float(g.group(1)), float(g.group(2)))), text)

    tag = shape.tag[len(svg) :] if shape.tag.startswith(svg) else shape.tag
    if tag == "path":
        data = shape.get("d", "")
        if re.search(r"[A-Za-z]", re.sub(r"[MLCZ]", "", data)):  # only Qt's absolute M, L, C, Z are mapped
            return False
        shape.set("d", pairs(data))
    elif tag in ("polyline", "polygon"):
        shape.set("points", pairs(shape.get("points", "")))
    elif tag == "rect" and b == 0 and c == 0:
        x, y = float(shape.get("x", 0)), float(shape.get("y", 0))
        x0, y0 = point(x, y)
        x1, y1 = point(x + float(shape.get("width", 0)), y + float(shape.get("height", 0)))
        for key, value in (
            ("x", min(x0, x1)),
            ("y", min(y0, y1)),
            ("width", abs(x1 - x0)),
            ("height", abs(y1 - y0)),
        ):
            shape.set(key, f"{value:.3f}")
    else:
        return False
    return True


def _sharpen_image(image, m: tuple[float, ...], max_pixels: int = 16_000_000) -> None:
    import base64
    import io
    import math

    from PIL import Image

    href_key = f"{{{_XLINK_NS}}}href"
    href = image.get(href_key) or image.get("href") or ""
    prefix = "data:image/png;base64,"
    if not href.startswith(prefix):
        return
    shown_w = abs(m[0]) * float(image.get("width", 0)) + abs(m[2]) * float(image.get("height", 0))
    shown_h = abs(m[1]) * float(image.get("width", 0)) + abs(m[3]) * float(image.get("height", 0))
    with Image.open(io.BytesIO(base64.b64decode(href[len(prefix) :]))) as picture:
        picture.load()
        w, h = picture.size
        factor = math.ceil(max(shown_w / max(w, 1), shown_h / max(h, 1)))
        while factor > 1 and w * h * factor * factor > max_pixels:
            factor -= 1
        if factor < 2:
            return
        big = picture.resize((w * factor, h * factor), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    big.save(buffer, "PNG", optimize=True)
    image.set(
        href_key if image.get(href_key) else "href",
        prefix + base64.b64encode(buffer.getvalue()).decode("ascii"),
    )


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
