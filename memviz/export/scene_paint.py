"""Painting a QGraphicsView's scene item by item with any painter (SVG, PDF, image). Split out of
render.py (issue 14)."""

from __future__ import annotations


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
