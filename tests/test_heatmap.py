"""The shared heatmap: its pixels are the colormap of the data, also when only new cells are coloured."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest

from memviz.panels import colormaps
from memviz.panels.heatmap import Heatmap, add_static_plot, stable_extent


def pixels(heatmap: Heatmap) -> np.ndarray:
    """The RGBA of every shown cell, read back through the QImage that is painted."""
    rows, cols = heatmap.image.cells
    image = heatmap.image.qimage
    return np.array(
        [[image.pixelColor(c, r).getRgb() for c in range(cols)] for r in range(rows)], dtype=np.uint8
    )


def expected(data: np.ndarray, levels, cmap: str) -> np.ndarray:
    lut = colormaps.lookup_table(cmap)
    lo, hi = levels
    index = np.clip((data - lo) * (len(lut) / (hi - lo)), 0, len(lut) - 1).astype(int)
    return lut[index]


@pytest.fixture
def heatmap(qtbot):
    widget = pg.GraphicsLayoutWidget()
    qtbot.addWidget(widget)
    item = Heatmap(cmap=colormaps.DIVERGING, levels=(-1.0, 1.0), grows=(True, True))
    widget.ci.addItem(item)
    yield item  # the widget (and so the item) lives while the test runs


def test_pixels_are_the_colormap_of_the_data(heatmap):
    data = np.linspace(-1.2, 1.2, 12 * 17, dtype=np.float32).reshape(12, 17)
    heatmap.set_data(data)
    np.testing.assert_array_equal(pixels(heatmap), expected(data, (-1.0, 1.0), colormaps.DIVERGING))


def test_growing_matrix_colours_only_new_cells_and_matches_a_full_colouring(heatmap):
    rng = np.random.default_rng(0)
    full = np.tril(rng.uniform(-1, 1, (40, 40)).astype(np.float32))
    shown = 0
    for t in [0, 1, 2, 5, 6, 20, 21, 39, 10, 11]:  # forward, jumps, and a scrub back
        keep = (min(shown, t + 1),) * 2 if shown else None
        heatmap.set_data(full[: t + 1, : t + 1], keep=keep)
        shown = t + 1
        np.testing.assert_array_equal(pixels(heatmap), expected(full[: t + 1, : t + 1], (-1.0, 1.0), "RdBu"))
    heatmap.set_data(full[:12, :12], levels=(-0.5, 0.5), keep=(12, 12))  # new levels: everything again
    np.testing.assert_array_equal(pixels(heatmap), expected(full[:12, :12], (-0.5, 0.5), "RdBu"))


def test_nan_cells_are_transparent(heatmap):
    data = np.array([[0.5, np.nan], [np.nan, -0.5]], dtype=np.float32)
    heatmap.set_data(data)
    assert pixels(heatmap)[0, 1, 3] == 0 and pixels(heatmap)[0, 0, 3] == 255


def test_view_follows_in_stable_steps_until_the_user_zooms(heatmap):
    assert [stable_extent(n) for n in (1, 64, 65, 100, 129, 1000, 1024)] == [1, 64, 80, 112, 160, 1024, 1024]
    for n in range(1, 200):
        assert n <= stable_extent(n) <= 1.25 * n + 16
    vb = heatmap.plot.getViewBox()
    heatmap.set_data(np.zeros((99, 99), np.float32))  # steps coming quickly: a run
    heatmap.set_data(np.zeros((100, 100), np.float32), keep=(99, 99))
    (x0, x1), (y0, y1) = vb.viewRange()
    assert (x0, x1, y0, y1) == (0, 112, 0, 112)
    heatmap.set_data(np.zeros((101, 101), np.float32), keep=(100, 100))
    assert vb.viewRange()[0] == [0, 112]  # same extent: the axes are not laid out again
    vb.sigRangeChangedManually.emit([True, True])  # what a wheel zoom or drag emits
    heatmap.set_data(np.zeros((300, 300), np.float32))
    assert vb.viewRange()[0] == [0, 112]  # the user's view is kept
    heatmap.follow_data()  # a double click
    assert vb.viewRange()[0] == [0, 320]


def test_still_figures_end_at_the_data_and_animations_keep_stable_frames(
    qtbot, run_session, gpt2_dir, sample_text
):
    from memviz.core.view import ViewState
    from memviz.export.render import FigureRenderer
    from memviz.panels.attention import AttentionPanel

    trace = run_session(gpt2_dir, sample_text).trace
    t = 70  # 71 steps: a stable extent of 80
    assert len(trace) > t and stable_extent(t + 1) == 80
    for exact, extent in ((True, t + 1), (False, 80)):
        renderer = FigureRenderer(AttentionPanel, trace, ViewState(cursor=t, follow=False), exact_fit=exact)
        vb = renderer.panel.heatmap.plot.getViewBox()
        assert vb.viewRange()[0] == [0, extent] and vb.viewRange()[1] == [0, extent]
        renderer.close()


def test_axes_on_screen_are_pixmaps_of_their_pictures(qtbot, monkeypatch):
    """A PixmapAxis copies a pixmap of its drawing after the first paint; the pixels are those of
    pyqtgraph's own replay of the picture (up to 1 level of antialiasing rounding)."""
    from PySide6.QtGui import QImage

    from memviz.panels.heatmap import PixmapAxis

    widget = pg.GraphicsLayoutWidget()
    qtbot.addWidget(widget)
    widget.resize(420, 320)
    item = Heatmap(cmap=colormaps.DIVERGING, levels=(-1.0, 1.0), x_label="key", y_label="query", title="t")
    widget.ci.addItem(item)
    item.set_data(np.linspace(-1, 1, 37 * 53).reshape(37, 53))
    widget.show()
    qtbot.waitExposed(widget)

    def shot() -> np.ndarray:
        image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
        return np.array(image.constBits(), np.uint8).reshape(image.height(), image.width(), 4).copy()

    for _ in range(3):  # the layout settles (axes widen to their texts); the axes make their pictures
        qtbot.wait(30)
        shot()
    blitted = shot()
    axes = [item.plot.getAxis(side) for side in ("left", "bottom")]
    assert all(isinstance(axis, PixmapAxis) and axis._pixmaps for axis in axes)
    # only the usual two axes show: a PlotItem shows every axis it is given
    assert [item.plot.getAxis(side).isVisible() for side in ("left", "bottom", "top", "right")] == [
        True,
        True,
        False,
        False,
    ]
    layout = pg.GraphicsLayout()
    static = add_static_plot(layout)
    assert [static.getAxis(side).isVisible() for side in ("left", "bottom", "top", "right")] == [
        True,
        True,
        False,
        False,
    ]
    monkeypatch.setattr(PixmapAxis, "use_pixmaps", False)
    replayed = shot()
    assert np.abs(blitted.astype(int) - replayed.astype(int)).max() <= 1


def test_axis_pixmaps_match_at_fractional_device_pixel_ratios(tmp_path):
    """At 125% or 150% scaling a whole logical pixel is not a whole device pixel: the pixmap must
    still land where the replay draws (a fresh process, since the ratio is fixed at start-up)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "ratio.py"
    script.write_text(
        "import numpy as np, pyqtgraph as pg\n"
        "from PySide6.QtGui import QImage\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from memviz.panels import colormaps\n"
        "from memviz.panels.heatmap import Heatmap, PixmapAxis\n"
        "widget = pg.GraphicsLayoutWidget(); widget.resize(421, 317)\n"
        "item = Heatmap(cmap=colormaps.DIVERGING, levels=(-1.0, 1.0), x_label='key', y_label='query')\n"
        "widget.ci.addItem(item); item.set_data(np.linspace(-1, 1, 37 * 53).reshape(37, 53)); widget.show()\n"
        "for _ in range(5): app.processEvents()\n"
        "def grab():\n"
        "    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_ARGB32)\n"
        "    return np.array(image.constBits(), np.uint8).astype(int).copy()\n"
        "shots = {}\n"
        "for use in (True, False):\n"
        "    PixmapAxis.use_pixmaps = use\n"
        "    grab(); grab()\n"
        "    shots[use] = grab()\n"
        "print(widget.devicePixelRatioF(), int(np.abs(shots[True] - shots[False]).max()))\n"
    )
    for ratio in ("1.25", "1.5"):
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_SCALE_FACTOR": ratio}
        out = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr[-2000:]
        shown_ratio, difference = out.stdout.split()
        assert float(shown_ratio) == float(ratio) and int(difference) <= 1
