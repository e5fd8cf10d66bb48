"""The SVG Qt's generator writes, made to look the same in every viewer (`postprocess_svg_text`):
cosmetic strokes baked to figure pixels, heatmap images enlarged so cells keep sharp edges. Split out
of render.py (issue 14)."""

from __future__ import annotations

import io
import re
from pathlib import Path

from memviz.export.out_files import write_bytes

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
