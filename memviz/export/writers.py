"""A figure's bytes: painted into a QImage at a scale (PNG), a QSvgGenerator (SVG) or a QPdfWriter
(PDF), all at 96 dpi (the widget's). The figure is anything with figure_size(), paint(painter) and
title(): a FigureRenderer. Split out of render.py (issue 14)."""

from __future__ import annotations

from memviz.errors import MemvizError
from memviz.export.svg_post import postprocess_svg_text

DPI = 96


def _set_dpi(image, dpi: float) -> None:
    image.setDotsPerMeterX(round(dpi / 0.0254))
    image.setDotsPerMeterY(round(dpi / 0.0254))


def to_image(figure, scale: float = 1.0):
    """The figure as a QImage, `scale` device pixels per logical pixel."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter

    if not scale > 0:
        raise MemvizError(f"--scale must be more than 0, got {scale}")
    width, height = figure.figure_size()
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
    figure.paint(painter)
    painter.end()
    _set_dpi(image, DPI * scale)  # the file's resolution: it prints at the scale-1 figure's size
    return image


def png_bytes(figure, scale: float = 1.0) -> bytes:
    from PySide6.QtCore import QBuffer, QIODevice

    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not to_image(figure, scale).save(buffer, "PNG"):
        raise MemvizError("cannot encode the PNG")
    return bytes(buffer.data())


def svg_bytes(figure) -> bytes:
    from PySide6.QtCore import QBuffer, QIODevice, QRect, QSize
    from PySide6.QtGui import QPainter
    from PySide6.QtSvg import QSvgGenerator

    width, height = figure.figure_size()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    generator = QSvgGenerator(QSvgGenerator.SvgVersion.Svg11)  # 1.1: clip paths (Tiny 1.2 drops them)
    generator.setOutputDevice(buffer)
    generator.setSize(QSize(width, height))
    generator.setViewBox(QRect(0, 0, width, height))
    generator.setResolution(DPI)
    generator.setTitle(figure.title())
    generator.setDescription("memviz figure")
    painter = QPainter()
    if not painter.begin(generator):
        raise MemvizError("cannot draw the SVG")
    figure.paint(painter)
    painter.end()
    return postprocess_svg_text(bytes(buffer.data()).decode("utf-8", errors="replace"))


def pdf_bytes(figure) -> bytes:
    from PySide6.QtCore import QBuffer, QIODevice, QMarginsF, QSizeF
    from PySide6.QtGui import QPageLayout, QPageSize, QPainter, QPdfWriter

    width, height = figure.figure_size()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buffer)
    writer.setResolution(DPI)
    writer.setCreator("memviz")
    writer.setTitle(figure.title())
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
    figure.paint(painter)
    painter.end()
    del writer  # the writer flushes the document's end into the buffer
    return bytes(buffer.data())
