"""The attention panel on a long transformer run (issue 16, item 4: redraw p95 <= 16 ms at T = 8192).

    OMP_NUM_THREADS=1 QT_QPA_PLATFORM=offscreen python benchmarks/draw_attention_long.py
    ... --tokens 4096 --steps 60      # a quicker look
    ... --json out.json

A GPT-2-small-shaped trace (12 layers x 12 heads, head dim 64, format 2: queries and keys, rows
rebuilt on demand) of T steps is built by `Trace.append` from random q/k, with two planted heads so
the picture has something to show: layer 3 head 5 attends to the previous token, layer 3 head 6
copies (from T/2 on, query t looks at key t - T/2 + 1: an induction stripe). What a redraw costs
does not depend on the values. One AttentionPanel (900 x 600, shown offscreen), then:

- first overview: the panel opens at the last step; the overview of a head nobody has shown is
  built on the worker. Time until it is drawn, and the longest gap between the ticks of a 16 ms
  QTimer on the UI thread meanwhile (16 ms: the UI thread was free);
- new step: the trace grows by one step (Trace.append, not timed), then `render` + events + paint
  of the panel (p50 / p95 over the timed steps, after warm-up steps); wall time, and the UI
  thread's own CPU time (time.thread_time: what the redraw costs when the machine's other
  processes are not taking the core; the shared 2-core machine runs at a load of 5);
- scrub: the cursor jumps to a random step in [T/2, T) (follow off): render + events + paint;
- head switch: another head (3, 6): time to its overview, longest UI gap;
- zoom: the view zoomed to 512 x 512 steps at the end: time until the exact tile is drawn, longest
  UI gap; then new steps while zoomed (the tile grows by the new row);
- RAM: what the panel holds (pooled heads, full-resolution cache, image buffers, tile), and the
  process' growth from before the panel was built: RSS (with the pages of the q/k files it maps,
  which the kernel can drop) and anonymous RSS (allocations: the panel and the trace's caches,
  float64 keys among them); the old full T x T buffer per head for comparison.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_state, ms_stats, rss_bytes  # noqa: E402

perf = time.perf_counter
L, A, D = 12, 12, 64  # GPT-2 small
SHOWN, COPY = (3, 5), (3, 6)


def log(message: str) -> None:
    print(message, flush=True)


def records(T: int, start: int, stop: int, seed: int = 0):
    """StepRecords start..stop-1 of a T-step GPT-2-small-shaped q/k run (deterministic per step)."""
    from memviz.core.trace import StepRecord

    def keys(t: int) -> np.ndarray:  # drawn again when asked again: nothing kept
        return np.random.default_rng((seed, t, 1)).standard_normal((L, A, D), dtype=np.float32)

    for t in range(start, stop):
        rng = np.random.default_rng((seed, t, 0))
        q = rng.standard_normal((L, A, D), dtype=np.float32)
        if t:
            q[SHOWN] = 2.0 * keys(t - 1)[SHOWN]  # previous token: logit 16 against about N(0, 2)
        if t >= T // 2:
            q[COPY] = 2.0 * keys(t - T // 2 + 1)[COPY]
        ids = rng.integers(0, 50257, 20)
        probs = np.sort(rng.random(20, dtype=np.float32))[::-1] / 20
        internals = {"attention_q": q, "attention_k": keys(t)}
        yield StepRecord(int(ids[0]), f" tok{t}", t > T // 2, ids, probs, internals)


def new_trace():
    from memviz.core.trace import Trace

    layout = {
        "num_heads": A,
        "num_kv_heads": A,
        "head_dim": D,
        "scale": [1 / math.sqrt(D)] * L,
        "sliding_window": [None] * L,
        "softcap": [None] * L,
    }
    model = {"name": "gpt2-small-shaped", "architecture": "gpt2", "kind": "transformer"}
    model.update(num_layers=L, num_heads=A, hidden_size=768, vocab_size=50257)
    return Trace(model, attention_layout=layout)


class Ticks:
    """A 16 ms QTimer on the UI thread: the gaps between its ticks say how long the UI was busy."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.times: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(16)
        self.timer.timeout.connect(lambda: self.times.append(perf()))

    def start(self) -> None:
        self.times = [perf()]
        self.timer.start()

    def stop(self) -> float:
        """The longest gap in ms."""
        self.timer.stop()
        self.times.append(perf())
        return round(float(np.diff(self.times).max()) * 1e3, 1)


def anon_rss() -> int:
    """Resident anonymous memory (what the process allocated; the q/k files' mapped pages are not in it)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def wait_until(app, done, limit: float = 120.0) -> float:
    t0 = perf()
    while not done():
        app.processEvents()
        time.sleep(0.002)
        if perf() - t0 > limit:
            raise RuntimeError("timed out")
    return perf() - t0


CPU: list[float] = []  # the UI thread's CPU time of each redraw timed (the machine's load aside)


def redraw(app, panel, state) -> float:
    """render + events + paint: wall seconds (and the UI thread's CPU seconds into CPU)."""
    t0, c0 = perf(), time.thread_time()
    panel.render(state)
    app.processEvents()
    panel.repaint()
    CPU.append(time.thread_time() - c0)
    return perf() - t0


def panel_bytes(panel) -> int:
    total = sum(head.nbytes for head in panel.pooled.values())
    total += sum(buffer.nbytes for buffer, _ in panel.matrices._kept.values())
    total += panel.heatmap.image.buffer.nbytes + panel.heatmap.tile.pixels.nbytes
    if panel.tile is not None:
        total += panel.tile["values"].nbytes
    return total


def run(T: int, steps: int, warmup: int) -> dict:
    from PySide6.QtCore import qInstallMessageHandler

    def quiet(mode, context, message):
        if "does not support" not in message:
            sys.stderr.write(message + "\n")

    qInstallMessageHandler(quiet)
    from memviz.core.view import ViewState
    from memviz.panels.attention import AttentionPanel
    from memviz.panels.view_model import ViewModel
    from memviz.ui.app import application

    app = application()
    grown = steps + warmup
    log(f"T = {T}: building {T - grown} steps ({L} x {A} heads, d {D}, q/k)")
    trace = new_trace()
    t0 = perf()
    for record in records(T, 0, T - grown):
        trace.append(record)
    build_s = perf() - t0
    ticks = Ticks()
    gc.collect()
    rss0, anon0 = rss_bytes(), anon_rss()
    state = ViewState(cursor=len(trace) - 1, layer=SHOWN[0], head=SHOWN[1], theme="dark")
    view = ViewModel(state)
    panel = AttentionPanel(view)
    panel.set_trace(trace)
    panel.resize(900, 600)
    panel.show()
    app.processEvents()
    result: dict = {"tokens": T, "heads": f"{L} x {A}", "head_dim": D, "build_s": round(build_s, 1)}

    # first overview: off the UI thread
    ticks.start()
    t0 = perf()
    first_render = redraw(app, panel, state)
    wait_until(app, lambda: panel.waiting == "" and panel.heatmap.cell > 1)
    app.processEvents()
    panel.repaint()
    result["first_overview"] = {
        "s": round(perf() - t0, 3),
        "ui_render_ms": round(first_render * 1e3, 1),
        "ui_longest_gap_ms": ticks.stop(),
        "block": panel.heatmap.cell,
        "shown": list(panel.heatmap.data.shape),
    }
    log(f"  first overview {result['first_overview']}")

    # new steps: the run grows
    times, cpu = [], []
    for n, record in enumerate(records(T, T - grown, T)):
        trace.append(record)
        state = ViewState(cursor=len(trace) - 1, layer=SHOWN[0], head=SHOWN[1], theme="dark")
        dt = redraw(app, panel, state)
        if n >= warmup:
            times.append(dt)
            cpu.append(CPU[-1])
    assert panel.waiting == "" and len(trace) == T
    result["new_step"] = ms_stats(times)
    result["new_step_ui_cpu"] = ms_stats(cpu)
    log(f"  new step {result['new_step']}, UI thread CPU {result['new_step_ui_cpu']}")

    # scrubbing
    rng = np.random.default_rng(1)
    scrub = []
    CPU.clear()
    for cursor in rng.integers(T // 2, T, steps):
        state = ViewState(cursor=int(cursor), layer=SHOWN[0], head=SHOWN[1], follow=False, theme="dark")
        scrub.append(redraw(app, panel, state))
    result["scrub_ui_cpu"] = ms_stats(CPU)
    assert panel.waiting == ""
    result["scrub"] = ms_stats(scrub)
    log(f"  scrub {result['scrub']}, UI thread CPU {result['scrub_ui_cpu']}")

    # another head: off the UI thread again
    state = ViewState(cursor=T - 1, layer=COPY[0], head=COPY[1], theme="dark")
    ticks.start()
    t0 = perf()
    switch_render = redraw(app, panel, state)
    wait_until(app, lambda: panel.waiting == "")
    result["head_switch"] = {
        "s": round(perf() - t0, 3),
        "ui_render_ms": round(switch_render * 1e3, 1),
        "ui_longest_gap_ms": ticks.stop(),
    }
    log(f"  head switch {result['head_switch']}")
    state = ViewState(cursor=T - 1, layer=SHOWN[0], head=SHOWN[1], theme="dark")
    redraw(app, panel, state)  # back: pooled heads are kept
    assert panel.waiting == ""

    # zoom into the last 512 x 512 steps: the exact tile
    vb = panel.heatmap.plot.getViewBox()
    ticks.start()
    t0 = perf()
    vb.setRange(xRange=(T - 512, T), yRange=(T - 512, T), padding=0)
    wait_until(app, lambda: panel.tile is not None and panel.tile_waiting == "")
    app.processEvents()
    panel.repaint()
    result["zoom_tile"] = {
        "s": round(perf() - t0, 3),
        "ui_longest_gap_ms": ticks.stop(),
        "tile": list(panel.tile["values"].shape),
    }
    log(f"  zoom {result['zoom_tile']}")
    zoomed = []
    CPU.clear()
    for cursor in rng.integers(T - 400, T, steps):  # scrubbing inside the zoomed part
        state = ViewState(cursor=int(cursor), layer=SHOWN[0], head=SHOWN[1], follow=False, theme="dark")
        zoomed.append(redraw(app, panel, state))
    result["scrub_zoomed"] = ms_stats(zoomed)
    result["scrub_zoomed_ui_cpu"] = ms_stats(CPU)
    log(f"  scrub zoomed {result['scrub_zoomed']}, UI thread CPU {result['scrub_zoomed_ui_cpu']}")

    gc.collect()
    result["panel_mb"] = round(panel_bytes(panel) / 2**20, 1)
    result["rss_growth_mb"] = round((rss_bytes() - rss0) / 2**20, 1)  # with the q/k files' mapped pages
    result["anon_rss_growth_mb"] = round((anon_rss() - anon0) / 2**20, 1)
    result["trace_ram_mb"] = round(trace.nbytes / 2**20, 1)
    result["old_full_buffer_mb_per_head"] = round(T * T * 4 / 2**20, 1)
    p95 = max(result["new_step"]["p95"], result["scrub"]["p95"], result["scrub_zoomed"]["p95"])
    result["target_redraw_p95_ms"] = 16
    result["target_met"] = p95 <= 16
    cpu95 = max(result[k]["p95"] for k in ("new_step_ui_cpu", "scrub_ui_cpu", "scrub_zoomed_ui_cpu"))
    result["target_met_ui_cpu"] = cpu95 <= 16  # on a loaded machine the wall times wait for a core
    log(f"  panel {result['panel_mb']} MB, RSS growth {result['rss_growth_mb']} MB")
    panel.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = {"machine": machine_state(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    result["case"] = run(args.tokens, args.steps, args.warmup)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
