"""A PNG at scale s is the scale-1 figure with s times the pixels: the same layout, not an enlarged crop.

Each panel is exported at scales 1, 1.5 and 2 in both themes; the larger images, downsampled to the
scale-1 size, must match the scale-1 image, and the axes must draw the same tick labels (the colour
bars' end labels among them) at every scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest

from memviz.cli import main
from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.export import render
from memviz.panels.registry import PANEL_CLASSES

# Of 255, per channel. Text antialiasing and image smoothing differ a little between scales: at most
# 3.1 on average and 32 in a 16 px block for these panels; an enlarged, cut figure (the bug this
# guards against) differs by 78 to 115 in some block.
MAX_MEAN_DIFFERENCE = 4.0
BLOCK = 16
MAX_BLOCK_DIFFERENCE = 50.0


@pytest.fixture(scope="module")
def traces(tmp_path_factory, lstm_dir, gpt2_dir) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scale-traces")
    out = {}
    for arch, model, extra in (
        ("lstm", lstm_dir, []),
        ("gpt2", gpt2_dir, []),
        ("lens", gpt2_dir, ["--logit-lens"]),
        # the compare panel: head 1.0 ablated, and the plain run over the same (read, not generated) tokens
        ("ablated", gpt2_dir, ["--intervene", "head:1.0=zero", "--generate", "0"]),
        ("plain", gpt2_dir, ["--generate", "0"]),
    ):
        path = folder / f"{arch}.memviz"
        args = ["trace", "--model", str(model), "--text", "The quick brown fox jumps", "--generate", "4"]
        assert main([*args, *extra, "--out", str(path)]) == 0
        out[arch] = path
    return out


@pytest.fixture(scope="module")
def app():
    return render.ensure_app()


class TickRecorder:
    """The tick label texts pyqtgraph's axes lay out while a figure is painted."""

    def __init__(self, monkeypatch) -> None:
        self.texts: list[str] = []
        original = pg.AxisItem.generateDrawSpecs

        def recording(axis, painter):
            specs = original(axis, painter)
            if specs is not None:
                self.texts.extend(text for _rect, _flags, text in specs[2])
            return specs

        monkeypatch.setattr(pg.AxisItem, "generateDrawSpecs", recording)

    def take(self) -> list[str]:
        texts, self.texts = sorted(self.texts), []
        return texts


def rgb(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if size is not None:
            image = image.resize(size, Image.Resampling.BOX)
        return np.asarray(image, dtype=np.float64)


panels = [pytest.param(cls, id=cls.name) for cls in PANEL_CLASSES if cls.name not in ("memory", "match")]


@pytest.mark.parametrize("cls", panels)
@pytest.mark.parametrize("theme", ["dark", "talk"])
def test_png_at_any_scale_is_the_scale_one_figure(app, traces, tmp_path, monkeypatch, cls, theme):
    kind = "lens" if cls.name == "logit-lens" else "gpt2" if cls.architectures == ("gpt2",) else "lstm"
    kind = "ablated" if cls.name == "compare" else kind
    trace = Trace.load(traces[kind])
    if cls.name == "compare":  # the ablated run, compared with the plain one
        trace.baseline = Trace.load(traces["plain"])
    state = ViewState(cursor=len(trace) - 1, theme=theme)
    ticks = TickRecorder(monkeypatch)
    one = render.export_figure(trace, cls, state, tmp_path / "one.png", scale=1)
    base_ticks = ticks.take()
    base = rgb(one)
    height, width = base.shape[:2]
    assert base_ticks, "the figure has axes with tick labels"
    for scale in (1.5, 2):
        big = render.export_figure(trace, cls, state, tmp_path / f"s{scale}.png", scale=scale)
        assert rgb(big).shape[:2] == (round(height * scale), round(width * scale))
        assert ticks.take() == base_ticks, f"scale {scale}: other tick labels than at scale 1"
        difference = np.abs(rgb(big, (width, height)) - base).mean()
        assert difference < MAX_MEAN_DIFFERENCE, f"scale {scale}: mean difference {difference:.2f}"
        # a moved or enlarged part (the title, an axis, a colour bar) shows as one very different block
        blocks = (width // BLOCK, height // BLOCK)
        worst = np.abs(rgb(big, blocks) - rgb(one, blocks)).max()
        assert worst < MAX_BLOCK_DIFFERENCE, f"scale {scale}: a {BLOCK} px block differs by {worst:.0f}"


def test_scaled_png_records_its_resolution(app, traces, tmp_path):
    from PIL import Image

    trace = Trace.load(traces["lstm"])
    cls = next(c for c in PANEL_CLASSES if c.name == "distribution")
    out = render.export_figure(trace, cls, ViewState(cursor=len(trace) - 1), tmp_path / "two.png", scale=2)
    with Image.open(out) as image:
        assert round(image.info["dpi"][0]) == 192  # prints at the scale-1 figure's size
