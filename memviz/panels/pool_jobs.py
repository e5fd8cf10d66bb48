"""The recurrent panels' pooled overviews whose first read of the trace is long, built on the panel's
worker: opening a 50,000-step run, or another layer, reads every step of the layer once (the span's
f: 0.8 s at 256 units; the gates' four heatmaps about 0.3 s), and the UI thread must not wait.

`PoolJobs.ready(pools, wanted, n, what)` is asked at each render. When the pools the render needs can
serve n steps with a short read, it makes the missing ones and says True: the render goes on, on the
UI thread, as before. Otherwise fresh pools are built to n on the worker (the UI thread never touches
them until they are delivered), it says False, the panel keeps the picture it shows and its note
says `what`; when they arrive they take the old ones' place and the panel renders again. A live run
adds a few steps meanwhile: read on the UI thread once the pools are here. An offscreen figure
(export) cannot wait: it builds in place.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from memviz.panels.attention_jobs import LatestJobs
from memviz.panels.step_pool import LevelPool

# numbers (steps x units) a render may read on the UI thread to extend its pools, by what is done with
# each: the span's log, running sum and exponentials cost about 60 ns a number (2^21: 0.13 s), the
# heatmaps' bin sums about 9 ns (2^23: 0.08 s)
ON_UI = {"span": 1 << 21, "sums": 1 << 23}


def missing(pool: LevelPool | None, n: int) -> int:
    """How many steps `pool` (None: not made yet) lacks for n steps (LevelPool.missing)."""
    return n if pool is None else pool.missing(n)


class PoolJobs:
    def __init__(self, panel: QWidget, redraw: Callable[[], None]) -> None:
        self.panel = panel
        self.redraw = redraw
        self.jobs = LatestJobs(panel)
        self.jobs.done.connect(self._done)
        self.trace = None
        self.waiting = ""  # what the worker is building, while it does
        self._asked: tuple | None = None
        self._pools: dict | None = None

    def reset(self, trace) -> None:
        """Another trace: the job for the old one is dropped."""
        self.jobs.cancel()
        self.trace = trace
        self.waiting = ""
        self._asked = None

    def ready(
        self,
        pools: dict,
        wanted: dict[Hashable, tuple[Callable[[], LevelPool], int]],
        n: int,
        what: str,
        work: str = "sums",
    ) -> bool:
        """wanted: key -> (make a fresh pool, its rows). True: `pools` holds them all and they serve
        n steps with a short read (ON_UI[work] numbers); False: the worker builds them, and the
        panel's note says `what`."""
        short = {key: missing(pools.get(key), n) * rows for key, (_, rows) in wanted.items()}
        synchronous = self.panel.testAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen)
        if sum(short.values()) <= ON_UI[work] or synchronous:
            for key, (make, _) in wanted.items():
                if key not in pools:
                    pools[key] = make()
            self.waiting = ""
            return True
        self._say(what)
        asked = (self.trace, tuple(wanted))
        if self.jobs.busy("pools") and self._asked == asked:
            return False  # on its way
        self._asked, self._pools = asked, pools
        trace = self.trace
        fresh = {key: make() for key, (make, _) in wanted.items() if short[key]}

        def work(cancelled):
            for pool in fresh.values():
                if cancelled():
                    return None
                pool.prepare(n)
            return trace, fresh

        self.jobs.submit("pools", work)
        return False

    def _say(self, text: str) -> None:
        """What the worker is doing (or why it failed), in the panel's note."""
        self.waiting = text
        note = getattr(self.panel, "note", None)
        if note is not None:
            note.setText(text)

    def _done(self, _kind: str, result: object) -> None:
        if result is None:
            return
        if isinstance(result, Exception):  # said in the panel's note; asked again at the next render
            self._say(f"could not build the overview: {result}".splitlines()[0])
            return
        trace, fresh = result
        if trace is not self.trace or self._pools is None:
            return
        for key, pool in fresh.items():
            held = self._pools.get(key)
            if held is None or missing(held, len(trace)) > missing(pool, len(trace)):
                self._pools[key] = pool
        self.waiting = ""
        self.redraw()

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the worker is idle and what it built is drawn (tests, benchmarks)."""
        from PySide6.QtWidgets import QApplication

        done = self.jobs.wait(msecs)
        QApplication.processEvents()
        return done
