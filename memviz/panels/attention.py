"""GPT-2 attention of the selected layer and head: query x key heatmap, the current query row outlined.

Up to `POOL_BINS` queries the matrix is shown at full resolution, a step colouring only its new row
(memviz.panels.attention_cache). Past that (T = 8192: a 268 MB matrix, O(T^2 d) to rebuild) the view
shows the matrix max-pooled over f x f blocks (memviz.core.attention_pool; f a power of two, at
most POOL_BINS blocks a side, so a sharp head stays visible), built on a worker thread the first
time a head is shown (the previous picture stays meanwhile, the note says "rebuilding") and grown on
the UI thread by the few rows a step adds. Zooming in until the view shows at most POOL_BINS steps a
side draws the exact rows of that part over the overview (a tile, built off the UI thread too);
zooming out shows the overview again. Hover and click are always in steps: the readout gives the
exact value of the query and key under the mouse, and the note says when the view is max-pooled.
A trace with sliding windows (`window_boundaries`) gets a thin line where each window starts.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QWidget

from memviz.core.attention_pool import BLOCK_ENTRIES, POOL_BINS, PooledHead, pool_factor, tile_rows
from memviz.core.trace import Trace
from memviz.core.trace_diff import is_difference
from memviz.core.view import ViewState
from memviz.panels import colormaps
from memviz.panels.attention_cache import AttentionCache
from memviz.panels.attention_jobs import LatestJobs
from memviz.panels.attention_view import PooledHeatmap
from memviz.panels.heatmap import GraphicsPanel, clamp, show_token, token_label
from memviz.panels.hover import HoverReadout, heatmap_source
from memviz.panels.outline import use_contrast_outline
from memviz.panels.token_axis import LabelledTokenAxis, replace_axis
from memviz.panels.token_labels import live_labels
from memviz.panels.view_model import ViewModel

HEADS_POOLED = 4  # pooled heads kept (4 MB each): switching back and forth rebuilds nothing
UI_ROWS = 32  # queries a render may pool itself (a step or a few of a run); more go to the worker
TILE_DELAY_MS = 60  # a zoom or pan settles this long before its tile is asked for
# full-resolution entries a render may rebuild itself (about 25 ms); a head first shown at T = 1024
# (a million entries, ~0.1 s) is rebuilt on the worker while the previous picture stays
FULL_ON_UI = 1 << 18


def attention_shape(trace: Trace) -> tuple[int, int]:
    """(layers, heads) of a trace with attention; (0, 0) for one without."""
    return trace.attention_shape or (0, 0)


def shows_attention(trace: Trace | None) -> bool:
    """A run with attention, even before its first step (its shape comes from the manifest)."""
    return trace is not None and trace.attention_shape is not None


class AttentionPanel(GraphicsPanel):
    name = "attention"
    title = "Attention"
    architectures = ("gpt2",)
    kinds = ("transformer",)  # every transformers family (the trace's kind)
    bins = POOL_BINS  # blocks a side of the overview at most (a class attribute: tests use fewer)

    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(view, parent)
        self.add_spin("layer", "layer")
        self.add_spin("head", "head")
        self.finish_controls()
        self.setToolTip(
            "Attention of one head: row = the token reading (query), column = the token it looks at (key). "
            "Each row sums to 1; the outlined row is the current step. Click a row to go to that step. "
            "A long run is shown max-pooled (each pixel the largest weight of its block); zoom in "
            "(wheel or drag) for the exact cells."
        )
        self.heatmap = PooledHeatmap(
            cmap=colormaps.SEQUENTIAL,
            levels=(0.0, 1.0),
            x_label="key (attended to)",
            y_label="query (reading)",
            invert_y=True,
            x_tokens=True,
            y_tokens=True,
            value_name="attention",
            grows=(True, True),
        )
        for side in ("bottom", "left"):
            replace_axis(self.heatmap, side, LabelledTokenAxis(side))
        use_contrast_outline(self.heatmap)
        self.heatmap.tooltip_fn = self._tooltip
        self.heatmap.value_fn = self.exact_value
        self.heatmap.clicked.connect(lambda row, col: self.view.update(cursor=row, follow=False))
        self.canvas.ci.addItem(self.heatmap)
        self.layer = self.head = 0
        self.step = -1
        self._shown = (-1, -1, -1, 1)  # layer, head, step and block side on screen
        self.matrices = AttentionCache()
        self.pooled: OrderedDict[tuple[int, int], PooledHead] = OrderedDict()
        self.waiting = ""  # what the worker is rebuilding for the view ("" when the view is complete)
        self.tile_waiting = ""  # the same for the zoomed tile
        self.tile: dict | None = None  # the exact tile over the zoomed view (see _update_tile)
        self._row_cache: tuple[tuple[int, int, int], np.ndarray] | None = None
        self.jobs = LatestJobs(self)
        self.jobs.done.connect(self._job_done)
        self._tile_timer = QTimer(self)
        self._tile_timer.setSingleShot(True)
        self._tile_timer.setInterval(TILE_DELAY_MS)
        self._tile_timer.timeout.connect(self._update_tile)
        self.heatmap.plot.getViewBox().sigRangeChanged.connect(self._view_moved)
        self.readout = HoverReadout(self)
        self.readout.add(heatmap_source(self.heatmap, self._readout))
        self.apply_theme(view.state)

    # -- reading the trace -------------------------------------------------------------------
    @property
    def synchronous(self) -> bool:
        """An offscreen figure cannot wait for a worker: it builds what it shows before it paints."""
        return self.testAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen)

    def _rows(self, layer: int, head: int):
        trace = self.trace
        return lambda a, b: trace.attention_matrix(layer, head, a, b)

    def exact_value(self, row: int, col: int) -> float:
        """The trace's own attention of query `row` on key `col` (one row rebuilt, then kept)."""
        if col > row or self.trace is None:
            return 0.0
        tile = self.tile
        if tile is not None and (tile["layer"], tile["head"]) == (self.layer, self.head):
            r, c = row - tile["r0"], col - tile["c0"]
            if 0 <= r < tile["done"] - tile["r0"] and 0 <= c < tile["values"].shape[1]:
                return float(tile["values"][r, c])
        key = (self.layer, self.head, row)
        if self._row_cache is None or self._row_cache[0] != key:
            self._row_cache = (key, np.asarray(self.trace.attention_row(row, self.layer, self.head)))
        return float(self._row_cache[1][col])

    def _readout(self, row: int, col: int, value: float) -> str:
        """One line: "query 41 'def' -> key 12 'read': 0.372"."""
        tokens = live_labels(self.trace)

        def named(i: int) -> str:
            return f"{i} '{show_token(tokens[i], 24)}'" if i < len(tokens) else str(i)

        return f"query {named(row)} \u2192 key {named(col)}: {value:.3f}"

    def _tooltip(self, row: int, col: int, value: float) -> str:
        tokens = live_labels(self.trace)
        text = (
            f"layer {self.layer}, head {self.head}\nquery {token_label(tokens, row)}\n"
            f"key {token_label(tokens, col)}\nattention = {value:.6f}"
        )
        f = self.heatmap.cell
        if f > 1 and not self._in_tile(row, col):
            r, c = row // f, col // f
            if r < self.heatmap.data.shape[0] and c < self.heatmap.data.shape[1]:
                text += f"\nshown: {self._pooled_by()} its {f}\u00d7{f} block = {float(self.heatmap.data[r, c]):.6f}"
        return text

    def _in_tile(self, row: int, col: int) -> bool:
        tile = self.tile
        return (
            tile is not None
            and tile["r0"] <= row < tile["done"]
            and tile["c0"] <= col < tile["c0"] + tile["values"].shape[1]
        )

    # -- the trace and the view --------------------------------------------------------------
    def set_trace(self, trace: Trace | None) -> None:
        self.jobs.cancel()
        super().set_trace(trace)
        self.heatmap.set_axis_tokens(live_labels(trace))
        self.heatmap.set_pooling(1, 0)
        self.heatmap.set_data(self.heatmap.data[:0, :0])
        self.heatmap.tile.clear()
        self.step = -1
        self._shown = (-1, -1, -1, 1)
        self.matrices = AttentionCache()
        self.pooled = OrderedDict()
        self.tile = None
        self._row_cache = None
        self.waiting = self.tile_waiting = ""

    def render(self, state: ViewState) -> None:
        trace = self.trace
        if trace is None or len(trace) == 0 or state.cursor < 0 or not trace.has("attention"):
            return
        layers, heads = attention_shape(trace)
        t = clamp(state.cursor, len(trace))
        self.layer = layer = clamp(state.layer, layers)
        self.head = head = clamp(state.head, heads)
        self.step = t
        self.sync_spin("layer", layer, layers - 1)
        self.sync_spin("head", head, heads - 1)
        if pool_factor(t + 1, self.bins) == 1:
            self._render_full(layer, head, t)
        else:
            self._render_pooled(layer, head, t)
        self.heatmap.set_highlight_row(t)
        for side in ("bottom", "left"):
            self.heatmap.plot.getAxis(side).grew(t + 1)
        self._draw_boundaries()
        self._say()

    def _render_full(self, layer: int, head: int, t: int) -> None:
        n = t + 1
        missing = n - self.matrices.held(layer, head)
        if missing > 0 and missing * n > FULL_ON_UI and not self.synchronous:
            self._ask_rows((layer, head), n)
            return  # the previous picture stays until the worker delivers
        # rows of earlier steps never change: with the same head, only the new row and column are coloured
        same_head = self._shown[:2] == (layer, head) and self._shown[3] == 1
        keep = (min(self._shown[2], t) + 1,) * 2 if same_head else None
        self.heatmap.set_pooling(1, t + 1)
        self.heatmap.set_data(self.matrices.matrix(self.trace, layer, head, stop=t + 1), keep=keep)
        self._shown = (layer, head, t, 1)
        self.waiting = ""
        self._clear_tile()

    def _pooled_head(self, key: tuple[int, int]) -> PooledHead:
        found = self.pooled.pop(key, None)
        if found is None:
            held = self.matrices.held(*key)
            signed = is_difference(self.trace)
            if held:  # the full-resolution rows a view already holds: pooled, not rebuilt
                found = PooledHead.from_dense(
                    self.matrices.matrix(self.trace, *key, stop=held), self.bins, signed
                )
            else:
                found = PooledHead(self.bins, signed)
        self.pooled[key] = found
        while len(self.pooled) > HEADS_POOLED:
            self.pooled.popitem(last=False)
        return found

    def _render_pooled(self, layer: int, head: int, t: int) -> None:
        key, n = (layer, head), t + 1
        pooled = self._pooled_head(key)
        if pooled.done < n:
            if n - pooled.done <= UI_ROWS or self.synchronous:
                pooled.extend(self._rows(layer, head), n)
            else:
                self._ask_overview(key, n, pooled)
                return  # the previous picture stays until the worker delivers
        self.waiting = ""
        f = pooled.factor
        same = self._shown[:2] == key and self._shown[3] == f
        keep = (min(self._shown[2] + 1, n) // f,) * 2 if same else None
        self.heatmap.set_pooling(f, n, frame=len(self.trace))  # a long run's frame: the whole run
        self.heatmap.set_data(pooled.grid(n, self._rows(layer, head)), keep=keep)
        self._shown = (layer, head, t, f)
        self._refresh_tile()

    def _ask_rows(self, key: tuple[int, int], n: int) -> None:
        """Full-resolution rows of a head the cache lacks, rebuilt on the worker."""
        self.waiting = f"rebuilding layer {key[0]} head {key[1]}\u2026"
        start = self.matrices.held(*key)
        asked = getattr(self, "_rows_asked", None)
        if self.jobs.busy("overview") and asked == (self.trace, key, start, n):
            return  # already on its way
        self._rows_asked = (self.trace, key, start, n)
        trace, rows = self.trace, self._rows(*key)

        def work(cancelled):
            return ("rows", trace, key, start, rows(start, n))

        self.jobs.submit("overview", work)  # the same kind: a newer head's request replaces it

    def _ask_overview(self, key: tuple[int, int], n: int, pooled: PooledHead) -> None:
        self.waiting = f"rebuilding the overview of layer {key[0]} head {key[1]}\u2026"
        asked = getattr(self, "_overview_asked", None)
        if (
            self.jobs.busy("overview")
            and asked is not None
            and asked[:2] == (self.trace, key)
            and asked[2] >= n
        ):
            return  # already on its way
        self._overview_asked = (self.trace, key, n)
        trace, base, rows = self.trace, pooled.copy(), self._rows(*key)

        def work(cancelled):
            return ("pooled", trace, key, base) if base.extend(rows, n, cancelled) else None

        self.jobs.submit("overview", work)

    def _job_done(self, kind: str, result: object) -> None:
        if isinstance(result, Exception):
            self.waiting = f"could not rebuild: {result}"
            self._say()
            return
        if result is None:
            return
        if kind == "overview" and result[0] == "rows":
            _, trace, key, start, rows = result
            if trace is self.trace:
                self.matrices.put(*key, start, rows)
                self.render(self.view.state)
        elif kind == "overview":
            _, trace, key, pooled = result
            if trace is not self.trace:
                return
            held = self.pooled.get(key)
            if held is None or held.done < pooled.done:
                self.pooled[key] = pooled
                self.pooled.move_to_end(key)
                while len(self.pooled) > HEADS_POOLED:
                    self.pooled.popitem(last=False)
            self.render(self.view.state)
        elif kind == "tile":
            trace, tile = result
            if trace is self.trace and (tile["layer"], tile["head"]) == (self.layer, self.head):
                self._show_tile(tile)

    # -- the zoomed tile ---------------------------------------------------------------------
    def _view_moved(self, *_args) -> None:
        if self.heatmap.cell > 1 or self.tile is not None:
            if self.synchronous:
                self._update_tile()
            else:
                self._tile_timer.start()

    def _clear_tile(self) -> None:
        self.jobs.cancel("tile")
        self.tile_waiting = ""
        if self.tile is not None:
            self.tile = None
            self.heatmap.tile.clear()

    def _wanted_tile(self) -> tuple[int, int, int, int] | None:
        """(r0, r1, c0, c1): the steps a full-resolution tile should cover now, or None (overview)."""
        heatmap = self.heatmap
        if heatmap.cell == 1 or self.step < 0:
            return None
        r0, r1, c0, c1 = heatmap.visible_steps()
        r1 = min(r1, self.step + 1)  # no query past the step shown
        if r1 <= r0 or c1 <= c0 or max(r1 - r0, c1 - c0) > self.bins:
            return None
        return r0, r1, c0, c1

    def _covers(self, want: tuple[int, int, int, int]) -> bool:
        tile = self.tile
        if tile is None or (tile["layer"], tile["head"]) != (self.layer, self.head):
            return False
        r0, r1, c0, c1 = want
        return (
            tile["r0"] <= r0
            and r1 <= tile["r1"]
            and tile["c0"] <= c0
            and c1 <= tile["c0"] + tile["values"].shape[1]
        )

    def _update_tile(self) -> None:
        want = self._wanted_tile()
        if want is None:
            self._clear_tile()
            self._say()
            return
        if self._covers(want):
            self._refresh_tile()
            return
        r0, r1, c0, c1 = want
        # a margin (within the budget) so that a small pan needs no new tile
        side = self.bins
        n = self.step + 1
        grow_r, grow_c = (side - (r1 - r0)) // 2, (side - (c1 - c0)) // 2
        r0, r1 = max(0, r0 - grow_r // 2), min(self.trace_len(), r1 + grow_r // 2)
        c0, c1 = max(0, c0 - grow_c // 2), min(self.trace_len(), c1 + grow_c // 2)
        layer, head, trace, rows = self.layer, self.head, self.trace, self._rows(self.layer, self.head)
        stop = min(r1, n)

        def work(cancelled=None):
            values = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
            done = tile_rows(rows, r0, stop, c0, c1, cancelled)
            if done is None:
                return None
            values[: stop - r0] = done
            tile = {
                "layer": layer,
                "head": head,
                "r0": r0,
                "r1": r1,
                "c0": c0,
                "values": values,
                "done": stop,
            }
            return trace, tile

        if self.synchronous or (stop - r0) * stop <= BLOCK_ENTRIES:  # a few milliseconds: no worker
            self._show_tile(work()[1])
        else:
            self.tile_waiting = "rebuilding the zoomed rows at full resolution\u2026"
            self._say()
            self.jobs.submit("tile", work)

    def trace_len(self) -> int:
        return len(self.trace) if self.trace is not None else 0

    def _show_tile(self, tile: dict) -> None:
        self.tile = tile
        self.tile_waiting = ""
        self._colour_tile(tile["done"] - tile["r0"])
        self._refresh_tile()
        self._say()

    def _refresh_tile(self) -> None:
        """After a step: the tile shows rows up to the step (computing the few new ones it lacks)."""
        tile = self.tile
        if tile is None:
            if self._wanted_tile() is not None and not self.jobs.busy("tile"):
                self._tile_timer.start()
            return
        if (tile["layer"], tile["head"]) != (self.layer, self.head):
            self._clear_tile()
            self._tile_timer.start()
            return
        n = self.step + 1
        want = min(n, tile["r1"])
        if tile["done"] < want:
            if want - tile["done"] <= UI_ROWS or self.synchronous:
                values = tile_rows(
                    self._rows(self.layer, self.head),
                    tile["done"],
                    want,
                    tile["c0"],
                    tile["c0"] + tile["values"].shape[1],
                )
                tile["values"][tile["done"] - tile["r0"] : want - tile["r0"]] = values
                tile["done"] = want
                self._colour_tile(want - tile["r0"])
            else:
                self.tile = None
                self.heatmap.tile.clear()
                self._tile_timer.start()
                return
        if tile.get("levels") != (self.heatmap.levels, self.heatmap.cmap_name):
            self._colour_tile(tile["done"] - tile["r0"])  # the colour scale moved (B - A's stable levels)
        self.heatmap.tile.set_shown_rows(min(n, tile["done"]) - tile["r0"])

    def _colour_tile(self, rows: int) -> None:
        tile = self.tile
        tile["levels"] = (self.heatmap.levels, self.heatmap.cmap_name)
        self.heatmap.show_tile(tile["values"], tile["r0"], tile["c0"], rows)

    # -- look --------------------------------------------------------------------------------
    def _draw_boundaries(self) -> None:
        steps = tuple(s for s in getattr(self.trace, "window_boundaries", ()) or () if 0 < s <= self.step)
        if steps or self.heatmap.boundary_lines:
            self.heatmap.set_boundaries(steps, self._boundary_pen())

    def _boundary_pen(self):
        # light in both themes: the matrix is mostly the colour map's dark end (weights near 0),
        # where the talk theme's dark foreground did not show (looked at)
        pen = pg.mkPen((255, 255, 255, 180), width=1, style=Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        return pen

    def pooled_note(self) -> str:
        """What the view shows besides exact cells: "max over 8×8", "full resolution here" or ""."""
        f = self.heatmap.cell
        if f == 1:
            return ""
        if self.tile is not None:
            return f"full resolution here (overview: {self._pooled_by()} {f}\u00d7{f})"
        return f"{self._pooled_by()} {f}\u00d7{f}"

    def _pooled_by(self) -> str:
        """How a block becomes a pixel: its largest weight, or (B - A) its largest difference either way."""
        return "largest |B \u2212 A| over" if is_difference(self.trace) else "max over"

    def _say(self) -> None:
        if self.trace is None or self.step < 0:
            return
        text = (
            f"layer {self.layer}  head {self.head}  query {token_label(live_labels(self.trace), self.step)}"
        )
        for extra in (self.pooled_note(), self.waiting, self.tile_waiting):
            if extra:
                text += f"  \u00b7 {extra}"
        self.note.setText(text)

    def figure_title(self, state: ViewState) -> str:
        title = super().figure_title(state)
        note = self.pooled_note()
        return title.replace(self.title, f"{self.title} ({note})", 1) if note else title

    def apply_theme(self, state: ViewState) -> None:
        super().apply_theme(state)
        if hasattr(self, "heatmap"):
            self.heatmap.apply_theme(state.theme_obj)
            self.heatmap.restyle_boundaries(self._boundary_pen())

    def wait_for_work(self, msecs: int = 30000) -> bool:
        """Block until the worker is idle and its results are drawn (tests, benchmarks)."""
        from PySide6.QtWidgets import QApplication

        done = self.jobs.wait(msecs)
        QApplication.processEvents()
        return done
