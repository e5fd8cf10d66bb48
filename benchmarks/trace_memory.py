"""Trace format 2 (issue 16): RAM and disk of a trace that keeps queries and keys, the cost of
rebuilding attention rows from them, and the cost of capturing them while stepping.

    OMP_NUM_THREADS=1 python benchmarks/trace_memory.py            # GPT-2 small at T = 1024, Llama at 8192
    OMP_NUM_THREADS=1 python benchmarks/trace_memory.py --quick    # T = 256 and 1024 (a minute)
    python benchmarks/trace_memory.py --only gpt2 --json out.json

Nothing is downloaded: both models are built from their configs with random weights (the same
shapes, so the same trace sizes and the same compute).

1. GPT-2 small (12 layers x 12 heads, 124M parameters), T = 1024, read by `Session.step` twice:
   with q/k (format 2, the default) and with dense rows (format 1, `--dense-attention`, what memviz
   did before). For each: `Trace.nbytes` (what the trace holds in RAM), tracemalloc's growth while
   the run is read (every numpy allocation the trace makes), the q/k files on disk, the saved file.
   Stepping: the bare eager loop (`model(ids, cache, use_cache=True)`, no attentions), memviz's
   backend step with q/k capture, and with dense rows (output_attentions), interleaved step by step
   (rotating their order) so background load hits them alike; the last 64 steps before T.
2. Llama-3.2-1B-shaped (hidden 2048, 32 query heads, 8 key/value heads, head dim 64, its rope),
   with 2 of its 16 layers and a 32,000-token vocabulary (the trace holds only the top 20
   candidates, so the vocabulary changes nothing it stores; the layers scale q/k linearly, so
   the report gives 16-layer figures as 8x the measured q/k bytes). 512 real tokens through
   `Session.step` (on 2 shared cores a step of this shape costs about 0.1 s, so 8192 would take a
   quarter of an hour), then a trace of T = 8192 steps built by `Trace.append` with random q/k of
   the real shapes and dtypes (what it stores and what a rebuild costs do not depend on the
   values): RAM (tracemalloc: every numpy allocation), q/k on disk, the saved file. The rebuild: `attention_rows_at(step)` (one row per head, every head of
   every layer: what the head grid reads), one head's `attention_row`, and a 512-query block of
   `attention_matrix`, at 48 steps near T, p50 and p95, warm (every layer's keys in the cache) and
   cold (caches emptied), beside the floor: one pass reading the keys. `--synthetic-layers 16`
   builds the trace with all 16 layers (measured, not 8x of 2).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_state, ms_stats, rss_bytes  # noqa: E402

perf = time.perf_counter
LLAMA_LAYERS_REAL = 16


def log(message: str) -> None:
    print(message, flush=True)


class IdTokenizer:
    """Stand-in tokenizer: text is token ids separated by spaces (no download)."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [int(x) for x in text.split() if x.isdigit()] or [0]

    def decode(self, ids) -> str:
        return "".join(f"<{int(i)}>" for i in ids)

    def convert_ids_to_tokens(self, ids):
        return [f"<{int(i)}>" for i in ids]


def _mb(n: float) -> float:
    return round(n / 2**20, 2)


def gpt2_model():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config()).eval()


def llama_model(layers: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=2048,
        intermediate_size=8192,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        num_hidden_layers=layers,
        vocab_size=32000,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


def backend_of(model, name: str):
    from memviz.backends.transformers_lm import TransformerBackend

    return TransformerBackend(model, IdTokenizer(), name=name, source="from_config")


def read(backend, ids: np.ndarray, dense: bool, timer=None) -> tuple[object, dict]:
    """Read `ids` with a Session; the trace, and what it cost in RAM while it grew."""
    from memviz.core.sampling import SamplingConfig
    from memviz.core.session import Session

    session = Session(backend, sampling=SamplingConfig(temperature=0.0), dense_attention=dense)
    session.feed(" ".join(str(int(i)) for i in ids))
    gc.collect()
    rss0 = rss_bytes()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    t0 = perf()
    n = 0
    while session.step() is not None:
        n += 1
        if timer is not None and n % 1024 == 0:
            timer(n, perf() - t0)
    seconds = perf() - t0
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    trace = session.trace
    return trace, {
        "tokens": len(trace),
        "attention_storage": trace.attention_storage,
        "trace_nbytes_mb": _mb(trace.nbytes),
        "tracemalloc_mb": _mb(current - base),
        "tracemalloc_peak_mb": _mb(peak - base),
        "rss_delta_mb": _mb(rss_bytes() - rss0),
        "qk_on_disk_mb": _mb(trace.disk_nbytes),
        "read_s": round(seconds, 1),
    }


def saved_size(trace) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.memviz"
        t0 = perf()
        trace.save(path)
        return _mb(path.stat().st_size), round(perf() - t0, 2)


def stepping(model_factory, T: int, window: int = 64) -> dict:
    """ms per step of the bare eager loop, memviz's backend with q/k capture, and with dense rows."""
    import torch
    from transformers import DynamicCache

    bare_model = model_factory()
    bare_model.set_attn_implementation("eager")
    qk = backend_of(model_factory(), "qk")
    qk.set_attention_storage("qk")
    dense = backend_of(model_factory(), "dense")
    ids = np.random.default_rng(1).integers(0, bare_model.config.vocab_size, T)
    cache = DynamicCache(config=bare_model.config)

    def bare(t: int) -> None:
        with torch.inference_mode():
            bare_model(input_ids=torch.tensor([[int(ids[t])]]), cache=cache, use_cache=True)

    methods = {
        "bare_eager": bare,
        "memviz_qk": lambda t: qk.step(int(ids[t])),
        "memviz_dense": lambda t: dense.step(int(ids[t])),
    }
    names = list(methods)
    times = {m: np.zeros(T) for m in names}
    for t in range(T):
        order = names[t % len(names) :] + names[: t % len(names)]
        for name in order:
            t0 = perf()
            methods[name](t)
            times[name][t] = perf() - t0
    sl = slice(T - window, T)
    out = {name: ms_stats(times[name][sl]) for name in names}
    for name in ("memviz_qk", "memviz_dense"):
        out[f"{name}_vs_bare"] = round(out[name]["p50"] / out["bare_eager"]["p50"], 3)
        out[f"{name}_paired_vs_bare"] = round(float(np.median(times[name][sl] / times["bare_eager"][sl])), 3)
    out["window"] = f"the last {window} steps before T = {T}"
    return out


def bench_gpt2(T: int) -> dict:
    log(f"GPT-2 small, T = {T}")
    result: dict = {"model": "GPT2LMHeadModel(GPT2Config()), random weights, float32", "tokens": T}
    ids = np.random.default_rng(0).integers(0, 50257, T)
    for name, dense in (("qk", False), ("dense", True)):
        trace, row = read(backend_of(gpt2_model(), "gpt2"), ids, dense)
        row["saved_file_mb"], row["save_s"] = saved_size(trace)
        result[name] = row
        log(f"  {name}: {row}")
        del trace
        gc.collect()
    result["target_ram_mb_max"] = 80
    result["target_met"] = max(result["qk"]["trace_nbytes_mb"], result["qk"]["tracemalloc_mb"]) <= 80
    return result


def synthetic_llama_trace(T: int, layers: int, layout: dict):
    """A trace of T steps with the Llama shape's q/k (random, the scale of real ones) and a step's
    other columns, built as a run builds it (Trace.append); what it held in RAM while it grew."""
    from memviz.core.trace import StepRecord, Trace

    model = {"name": "llama-1b-shaped", "architecture": "llama", "kind": "transformer", "num_layers": layers}
    model.update(num_heads=32, hidden_size=2048, vocab_size=32000)
    rng = np.random.default_rng(0)
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    trace = Trace(model, attention_layout=layout)
    t0 = perf()
    for _ in range(T):
        internals = {
            "attention_q": rng.standard_normal((layers, 32, 64), dtype=np.float32) * 2,
            "attention_k": rng.standard_normal((layers, 8, 64), dtype=np.float32) * 2,
        }
        ids = rng.integers(0, 32000, 20)
        probs = np.sort(rng.random(20, dtype=np.float32))[::-1] / 20
        memory = {"entropy": np.float32(3.0), "target_logprob": np.float32(-3.0)}
        trace.append(StepRecord(int(ids[0]), "x", False, ids, probs, internals, memory=memory))
    seconds = perf() - t0
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return trace, {
        "tokens": T,
        "trace_nbytes_mb": _mb(trace.nbytes),
        "tracemalloc_mb": _mb(current - base),
        "tracemalloc_peak_mb": _mb(peak - base),
        "qk_on_disk_mb": _mb(trace.disk_nbytes),
        "append_ms_per_step": round(seconds / T * 1e3, 3),
    }


def rebuild_timings(trace, T: int, scale: float, n_steps: int = 48) -> dict:
    """All heads' rows at a step (`attention_rows_at`: what the head grid reads), one head's row and
    a 512-query matrix block, at steps near T. Cold: the store's caches emptied before each call
    (keys copied from the memory map again); warm: every layer's keys cached, rows not. The floor:
    one pass reading the cached float32 keys (np.sum), what any exact rebuild must read."""
    store = trace._attention
    rng = np.random.default_rng(2)
    steps = [int(s) for s in rng.integers(T - 256, T, n_steps)]
    cold = []
    for s in steps[:4]:
        store._keys32.clear()
        store._rows.clear()
        t0 = perf()
        trace.attention_rows_at(s)
        cold.append(perf() - t0)
    trace.attention_rows_at(T - 1)
    every, one, block = [], [], []
    for s in steps:
        store._rows.clear()
        t0 = perf()
        rows = trace.attention_rows_at(s)
        every.append(perf() - t0)
        t0 = perf()
        trace.attention_row(s - 1, 1, 17)
        one.append(perf() - t0)
    for s in steps[:6]:
        t0 = perf()
        trace.attention_matrix(0, 5, s - 512, s)
        block.append(perf() - t0)
    # the same numbers whichever call asks: one head's row, a matrix's row, all heads' rows
    s = steps[0]
    store._rows.clear()
    row, block_rows = trace.attention_row(s, 1, 17), trace.attention_matrix(0, 5, s - 3, s + 1)
    rows = trace.attention_rows_at(s)
    same = bool(np.array_equal(row, rows[1, 17]) and np.array_equal(block_rows[-1], rows[0, 5]))
    keys = [b[:, :, :filled] for b, filled in store._keys32.values()]
    floor = []
    for _ in range(5):
        t0 = perf()
        for k in keys:
            k.sum()
        floor.append(perf() - t0)
    every_ms = ms_stats(every)
    return {
        "all_heads_one_row_each_warm": every_ms,
        "all_heads_one_row_each_cold": ms_stats(cold),
        "heads_measured": int(rows.shape[0] * rows.shape[1]),
        "all_heads_16_layers_p50_ms_estimate": round(every_ms["p50"] * scale, 2),
        "per_head_row_ms_from_all_heads": round(every_ms["p50"] / (rows.shape[0] * rows.shape[1]), 4),
        "one_head_row": ms_stats(one),
        "matrix_512_queries": ms_stats(block),
        "read_all_keys_once_ms": ms_stats(floor),
        "read_all_keys_16_layers_ms_estimate": round(ms_stats(floor)["p50"] * scale, 2),
        "key_cache_mb": _mb(sum(b.nbytes for b, _ in store._keys32.values())),
        "rows_at_row_matrix_bit_identical": same,
    }


def bench_llama(
    T: int, T_real: int, layers: int = 2, synthetic_layers: int = 2, head_grid: bool = False
) -> dict:
    log(
        f"Llama-3.2-1B-shaped, {layers} of {LLAMA_LAYERS_REAL} layers: {T_real} real steps, T = {T} for storage"
    )
    backend = backend_of(llama_model(layers), "llama-1b-shaped")
    ids = np.random.default_rng(0).integers(0, 32000, T_real)
    real, run = read(backend, ids, dense=False)
    run["saved_file_mb"], run["save_s"] = saved_size(real)
    layout = real.attention_layout.as_manifest()
    log(f"  real run: {run}")
    del real
    gc.collect()
    # the real run's layers are all alike: the synthetic trace repeats the first one's entries
    layout = {k: v[:1] * synthetic_layers if isinstance(v, list) else v for k, v in layout.items()}
    trace, row = synthetic_llama_trace(T, synthetic_layers, layout)
    row["layers"] = synthetic_layers
    row["saved_file_mb"], row["save_s"] = saved_size(trace)
    scale = LLAMA_LAYERS_REAL / synthetic_layers
    row["16_layers"] = {
        "qk_on_disk_mb": round(row["qk_on_disk_mb"] * scale, 1),
        "dense_float16_lower_triangle_mb": round(LLAMA_LAYERS_REAL * 32 * T * (T + 1) / 2 * 2 / 2**20, 1),
    }
    log(f"  T = {T}: {row}")
    result: dict = {"layers_run": layers, "real_run": run, "storage": row}
    result["rebuild"] = rebuild_timings(trace, T, scale)
    result["rebuild"]["trace_nbytes_after_mb"] = _mb(trace.nbytes)  # the key cache and rows kept
    if head_grid:
        result["head_grid"] = bench_head_grid(trace)
    log(f"  rebuild: {result['rebuild']}")
    result["targets"] = {"ram_mb_max": 1024, "disk_mb_max": 1536, "rebuild_all_heads_p50_ms_max": 2.0}
    return result


def bench_head_grid(trace, steps: int = 64) -> dict:
    """The head grid at T = len(trace), offscreen: the UI thread's work while the cursor steps back
    one token every 50 ms, then scrubs to random steps every 16 ms: each render (the request), each
    result's arrival (heights and raster), each paint of the canvas the event loop makes (what
    changed: the raster), and a full repaint forced once per step (axes too, the worst case); the
    worker's steps drawn, and how long the cursor's step took to come after the cursor stopped."""
    import pyqtgraph as pg

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from memviz.core.view import ViewState
    from memviz.panels.head_grid import HeadGridPanel
    from memviz.panels.view_model import ViewModel

    app = QApplication.instance() or QApplication([])
    ui: list[float] = []
    paints: list[float] = []
    paint_event = pg.GraphicsView.paintEvent

    cpu: dict[str, list[float]] = {"ui": [], "paint": []}  # the UI thread's own CPU time (no waiting)

    def timed_paint(self, event):
        t0, c0 = perf(), time.thread_time()
        paint_event(self, event)
        paints.append(perf() - t0)
        cpu["paint"].append(time.thread_time() - c0)

    pg.GraphicsView.paintEvent = timed_paint

    class Timed(HeadGridPanel):
        def render(self, state):
            t0, c0 = perf(), time.thread_time()
            super().render(state)
            ui.append(perf() - t0)
            cpu["ui"].append(time.thread_time() - c0)

        def _job_done(self, key, result):
            t0, c0 = perf(), time.thread_time()
            super()._job_done(key, result)
            ui.append(perf() - t0)
            cpu["ui"].append(time.thread_time() - c0)

    T = len(trace)
    view = ViewModel(ViewState(cursor=T - 1))
    panel = Timed(view)
    panel.resize(1400, 900)
    panel.show()
    panel.set_trace(trace)
    view.changed.connect(panel.render)
    panel.render(view.state)

    def pump(seconds: float) -> None:
        end = perf() + seconds
        while perf() < end:
            app.processEvents()
            time.sleep(0.001)  # an idle event loop, not a spinning one: the worker needs a core

    def settle() -> float:
        t0 = perf()
        while panel.step != view.state.cursor or panel.jobs.busy():
            pump(0.001)
        return perf() - t0

    settle()
    paint = []
    result: dict = {"T": T, "grid": list(panel.shape), "bins": panel.bins, "levels": panel.levels}
    rng = np.random.default_rng(3)
    for name, period, cursor_at in (
        ("stepping_every_50ms", 0.05, lambda i: T - 2 - i),
        ("scrubbing_every_16ms", 0.016, lambda i: int(rng.integers(T // 2, T))),
    ):
        ui.clear()
        paint.clear()
        paints.clear()
        cpu["ui"].clear()
        cpu["paint"].clear()
        drawn = set()
        for i in range(steps):
            view.update(cursor=cursor_at(i))
            pump(period)
            drawn.add(panel.step)
        wait = settle()
        painted = len(paints)
        for _ in range(16):
            t0 = perf()
            panel.canvas.viewport().repaint()
            paint.append(perf() - t0)
        result[name] = {
            "render_and_arrival_ms": ms_stats(ui),
            "render_and_arrival_cpu_ms": ms_stats(cpu["ui"]),
            "paint_event_ms": ms_stats(paints[:painted]),
            "paint_event_cpu_ms": ms_stats(cpu["paint"][:painted]),
            "full_repaint_ms": ms_stats(paint),
            "steps_drawn": len(drawn),
            "steps_asked": steps,
            "last_step_arrived_after_ms": round(wait * 1e3, 1),
        }
        log(f"  head grid {name}: {result[name]}")
    panel.close()
    pg.GraphicsView.paintEvent = paint_event
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T = 256 (GPT-2) and 1024 (Llama)")
    parser.add_argument(
        "--only", default="gpt2,stepping,llama", help="some of gpt2, stepping, llama, headgrid (with llama)"
    )
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument(
        "--synthetic-layers",
        type=int,
        default=2,
        help="layers of the T = 8192 Llama trace (16: the whole model, no x8 estimate; 1.3 GB of q/k)",
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from memviz.backends.transformers_load import quiet_transformers

    quiet_transformers()
    results = {"machine": machine_state(), "torch_threads": torch.get_num_threads()}
    only = set(args.only.split(","))
    if "gpt2" in only:
        results["gpt2_small"] = bench_gpt2(256 if args.quick else 1024)
    if "stepping" in only:
        T = 256 if args.quick else 1024
        log(f"stepping, GPT-2 small, T = {T}")
        results["gpt2_small_stepping"] = stepping(gpt2_model, T)
        log(f"  stepping: {results['gpt2_small_stepping']}")
    if "llama" in only:
        results["llama_1b_shaped"] = bench_llama(
            2048 if args.quick else 8192,
            128 if args.quick else 512,
            synthetic_layers=args.synthetic_layers,
            head_grid="headgrid" in only,
        )
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
