"""The app's window on a long LSTM run (issue 16, item 4: redraw p95 <= 16 ms at T = 50,000).

    OMP_NUM_THREADS=1 QT_QPA_PLATFORM=offscreen python benchmarks/draw_recurrent_long.py
    ... --tokens 3000,12000 --steps 40     # a quicker look
    ... --tokens 12000 --profile            # where a new step's redraw goes (cProfile, top 25)

A trace of T steps of a 2-layer, 256-unit LSTM (gates, cell and hidden state: 12.5 KB a step) is
built by `Trace.append` from random records (what a redraw costs does not depend on the values).
Each T runs in its own process (so its RSS is its own). It is opened in the real MainWindow
(1600 x 1000, every panel the app shows for an LSTM, and the token strip), and then:

- new step: append one step, the worker's `stepped` handler, `MainWindow.redraw`, the paint;
- scrub: the cursor jumps to a random earlier step (follow off), redraw and paint: every one is a
  first redraw after a scrub;
- play: from 300 steps before the end the window replays the trace (its own replay timer, as
  fast as it goes); a 16 ms QTimer on the UI thread records the gaps between its ticks (16 ms when
  the UI thread is free; a longer gap is how long it could not answer a click, a key);
- open: `open_trace` and the first paint on the UI thread; "ready" adds the panels' first work on
  their workers (the span's first read of a layer); the same for switching to the other layer;
- RSS: the process' resident memory after the window has drawn the trace, less the RSS before
  the trace was built (window shown, empty), per step; the same for RssAnon (what is not a mapped
  file: a trace column on disk is mapped, its pages count in RSS); beside it `Trace.nbytes`, what
  the trace holds in RAM, per step.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_state, ms_stats, rss_bytes, wait_for_workers  # noqa: E402

perf = time.perf_counter
LAYERS, HIDDEN, VOCAB = 2, 256, 97


def lstm_model(hidden: int) -> dict:
    return {
        "name": f"lstm-{LAYERS}x{hidden}-synthetic",
        "source": "synthetic",
        "architecture": "lstm",
        "kind": "recurrent",
        "cell": "lstm",
        "num_layers": LAYERS,
        "num_heads": 0,
        "hidden_size": hidden,
        "vocab_size": VOCAB,
        "context_size": None,
    }


def records(start: int, stop: int, hidden: int, seed: int = 0):
    """LSTM steps: gates in (0, 1) (g in (-1, 1)), c ~ N(0, 1), h = o tanh(c)."""
    from memviz.core.trace import KEPT_CANDIDATES, StepRecord

    rng = np.random.default_rng(seed + start)
    words = ("the ", "cat ", "sat ", "on ", "a ", "mat", ".\n")
    for t in range(start, stop):
        gates = rng.random((LAYERS, 4, hidden), dtype=np.float32)
        gates[:, 2] = gates[:, 2] * 2 - 1
        cell = rng.standard_normal((LAYERS, hidden), dtype=np.float32)
        yield StepRecord(
            token_id=t % VOCAB,
            token_text=words[t % len(words)],
            generated=False,
            topk_ids=rng.integers(0, VOCAB, KEPT_CANDIDATES),
            topk_probs=np.full(KEPT_CANDIDATES, 0.05, np.float32),
            internals={"gates": gates, "cell": cell, "hidden": np.tanh(cell) * gates[:, 3]},
        )


def rss_anon_bytes() -> int:
    """RssAnon: resident memory that is not a mapped file (a memory-mapped trace column's pages
    count in RSS but are page cache)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def redraw(app, window) -> None:
    window.redraw()
    app.processEvents()
    app.processEvents()


def one(T: int, steps: int, warmup: int, hidden: int, profile: bool) -> dict:
    from PySide6.QtCore import QSettings, QTimer, qInstallMessageHandler

    qInstallMessageHandler(lambda *a: None)
    from memviz.core.trace import Trace
    from memviz.ui.app import application
    from memviz.ui.main_window import MainWindow

    app = application()
    result: dict = {"tokens": T, "hidden": hidden, "machine": machine_state()}
    with tempfile.TemporaryDirectory() as folder:
        window = MainWindow(settings=QSettings(str(Path(folder) / "s.ini"), QSettings.IniFormat))
        window.resize(1600, 1000)
        window.show()
        redraw(app, window)
        gc.collect()
        base, base_anon = rss_bytes(), rss_anon_bytes()
        trace = Trace(lstm_model(hidden))
        t0 = perf()
        for record in records(0, T - steps - warmup, hidden):
            trace.append(record)
        result["build_s"] = round(perf() - t0, 1)
        t0 = perf()
        window.open_trace(trace)
        redraw(app, window)
        result["open_ms"] = round((perf() - t0) * 1e3, 1)  # the UI thread's part
        result["ready_ms"] = round(wait_for_workers(app, window, t0) * 1e3, 1)  # and the workers'
        # another layer: the UI thread's part (the span's first read of it is the worker's)
        t0 = perf()
        window.view.update(layer=1)
        redraw(app, window)
        result["layer_switch_ms"] = round((perf() - t0) * 1e3, 1)
        result["layer_ready_ms"] = round(wait_for_workers(app, window, t0) * 1e3, 1)
        window.view.update(layer=0)
        redraw(app, window)
        wait_for_workers(app, window, perf())
        result["panels"] = sorted(
            name
            for name in window.panels
            if not window.docks[name].isHidden() and window.docks[name].isVisible()
        )
        grown, grown_cpu, renders = [], [], []
        profiler = cProfile.Profile() if profile else None
        for n, record in enumerate(records(T - steps - warmup, T, hidden)):
            index = trace.append(record)
            if profiler is not None and n >= warmup:
                profiler.enable()
            t0, c0 = perf(), time.process_time()
            window.playback._on_stepped(index, 20.0)  # the worker's report: the window's handler follows
            window.redraw()
            t1 = perf()
            app.processEvents()
            app.processEvents()
            if n >= warmup:
                grown.append(perf() - t0)
                grown_cpu.append(time.process_time() - c0)
                renders.append(t1 - t0)
            if profiler is not None:
                profiler.disable()
        rng = np.random.default_rng(1)
        scrub = []
        scrub_profiler = cProfile.Profile() if profile else None
        for cursor in rng.integers(0, T, steps):
            if scrub_profiler is not None:
                scrub_profiler.enable()
            t0 = perf()
            window.view.update(cursor=int(cursor), follow=False)
            redraw(app, window)
            scrub.append(perf() - t0)
            if scrub_profiler is not None:
                scrub_profiler.disable()
        # play: the replay timer moves the cursor; a 16 ms timer measures how long the UI is blocked
        window.view.update(cursor=T - 301, follow=False)
        redraw(app, window)
        ticks: list[float] = []
        probe = QTimer()
        probe.setInterval(16)  # a 60 Hz UI timer (an animation, the redraw pacer's own)
        probe.timeout.connect(lambda: ticks.append(perf()))
        probe.start()
        window.playback.set_playing(True)
        frames0 = window.render_count
        started = perf()
        while window.view.state.cursor < T - 1 and perf() - started < 60:
            app.processEvents()
        probe.stop()
        window.playback.set_playing(False)
        gaps = np.diff(ticks) if len(ticks) > 1 else np.zeros(0)
        result["play"] = {
            "steps": 300,
            "seconds": round(perf() - started, 2),
            "frames": window.render_count - frames0,
            "gap_p95_ms": round(float(np.percentile(gaps, 95)) * 1e3, 2) if gaps.size else None,
            "gap_max_ms": round(float(gaps.max()) * 1e3, 2) if gaps.size else None,
        }
        result["new_step"] = {**ms_stats(grown), "max": round(max(grown) * 1e3, 2)}
        result["new_step_cpu"] = ms_stats(grown_cpu)  # this process' CPU time: less of the machine's load
        result["new_step_render"] = ms_stats(renders)  # MainWindow.redraw alone (the paint follows)
        result["scrub"] = {**ms_stats(scrub), "max": round(max(scrub) * 1e3, 2)}
        gc.collect()
        app_bytes = rss_bytes() - base
        result["rss_mb"] = round(rss_bytes() / 2**20, 1)
        result["app_kb_per_token"] = round(app_bytes / T / 1024, 2)
        result["app_anon_kb_per_token"] = round((rss_anon_bytes() - base_anon) / T / 1024, 2)
        result["trace_kb_per_token"] = round(trace.nbytes / T / 1024, 2)
        if profiler is not None:
            print("== new steps", file=sys.stderr)
            pstats.Stats(profiler, stream=sys.stderr).sort_stats(
                os.environ.get("SORT", "cumulative")
            ).print_stats(25)
            print("== scrubs", file=sys.stderr)
            pstats.Stats(scrub_profiler, stream=sys.stderr).sort_stats(
                os.environ.get("SORT", "cumulative")
            ).print_stats(25)
        window.close()
        if hasattr(window, "shutdown"):
            window.shutdown()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="3000,12000,50000", help="comma-separated T")
    parser.add_argument("--steps", type=int, default=100, help="timed new steps (and scrubs)")
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--profile", action="store_true", help="cProfile the new steps (one T)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    sizes = [int(v) for v in args.tokens.split(",")]
    if args.one or args.profile:
        results = [one(T, args.steps, args.warmup, args.hidden, args.profile) for T in sizes]
    else:  # each T in a process of its own: its RSS is its own
        results = []
        for T in sizes:
            command = [sys.executable, __file__, "--one", "--tokens", str(T), "--steps", str(args.steps)]
            command += ["--warmup", str(args.warmup), "--hidden", str(args.hidden), "--json", "-"]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    if args.json == "-":
        print(json.dumps(results[-1] if len(results) == 1 else results))
        return 0
    print(f"machine: {machine_state()}; panels: {', '.join(results[0]['panels'])}")
    for r in results:
        n, s, p, c = r["new_step"], r["scrub"], r["play"], r["new_step_cpu"]
        print(
            f"T={r['tokens']:6d}  new step p50 {n['p50']:6.2f} p95 {n['p95']:6.2f} ms (CPU p50 {c['p50']:.2f} "
            f"p95 {c['p95']:.2f}; render alone p50 {r['new_step_render']['p50']:.2f}) | first after scrub "
            f"p50 {s['p50']:6.2f} p95 {s['p95']:6.2f} max {s['max']:6.2f} ms | play: UI timer gap p95 "
            f"{p['gap_p95_ms']} ms ({p['frames']} frames / {p['seconds']} s) | RSS {r['rss_mb']} MB, app "
            f"{r['app_kb_per_token']} KB/token, anonymous {r.get('app_anon_kb_per_token')} KB/token "
            f"(trace in RAM {r['trace_kb_per_token']} KB/token) | open {r['open_ms']} ms (ready "
            f"{r['ready_ms']} ms) | another layer {r['layer_switch_ms']} ms (ready {r['layer_ready_ms']} ms)",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
