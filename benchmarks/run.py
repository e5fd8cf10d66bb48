"""memviz benchmarks: speed and memory against bare baselines, with the targets of issue 7.

    python benchmarks/run.py --quick                 # smoke run, under a minute
    python benchmarks/run.py --json results.json     # every figure (takes ~15 minutes on 2 cores)
    python benchmarks/run.py --only gpt2,draw        # some sections

Sections: gpt2 (ms/token vs a bare KV-cache loop, and incremental vs full re-run), lstm, draw
(panel redraw), memory (long-term memory store), trace (RAM and disk of a 1024-token trace),
startup (window, model ready). Every timing is on the machine the script runs on; the JSON
records its load average and whether `memviz train` was running.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import warnings  # noqa: E402

import numpy as np  # noqa: E402

warnings.filterwarnings("ignore", message=".*TF32.*")
from common import KeyDistribution, machine_info, machine_state, ms_stats, rss_bytes  # noqa: E402

TARGETS = {
    "gpt2_overhead_ratio_max": 1.10,
    "incremental_speedup_min": 5.0,
    "draw_p95_ms_max": 16.0,
    "memory_p50_ms_max_at_1M": 2.0,
    "memory_recall10_min": 0.9,
    "trace_ram_mb_max": 200.0,
    "window_s_max": 1.5,
}

perf = time.perf_counter
MEMORY_MAX = [1_000_000]


def log(*args) -> None:
    print(*args, flush=True)


# ------------------------------------------------------------------------------------------------
# GPT-2 small (random weights)
# ------------------------------------------------------------------------------------------------
class IdTokenizer:
    """Stand-in tokenizer: text is token ids separated by spaces; decode shows '<id>'.

    GPT-2 small's real tokenizer is not needed for timing (no download, no network here); the
    backend caches token texts, so decode costs nothing after the first time anyway.
    """

    def encode(self, text: str) -> list[int]:
        return [int(x) for x in text.split() if x.isdigit()] or [0]

    def decode(self, ids) -> str:
        return "".join(f"<{int(i)}>" for i in ids)


def gpt2_small():
    """GPT2LMHeadModel(GPT2Config()): 124M parameters, random weights, eager attention."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from memviz.backends.gpt2 import _quiet_transformers

    _quiet_transformers()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    model.set_attn_implementation("eager")
    return model


def bench_gpt2(quick: bool, ctx: dict) -> dict:
    """ms/token of Session.step (what the app does per token) against bare transformers loops.

    All methods step the same token ids through their own KV cache; they are interleaved step by
    step (rotating the order) so that load on the machine hits them alike. The window of steps
    just before each context length is timed.
    """
    import torch
    from transformers import DynamicCache

    from memviz.backends.gpt2 import GPT2Backend
    from memviz.core.sampling import SamplingConfig
    from memviz.core.session import Session

    contexts = [64] if quick else [128, 512, 1024]
    window = 16 if quick else 64
    n = max(contexts)
    model = gpt2_small()
    bare_eager = copy.deepcopy(model)  # copies before the backend adds its key hook
    bare_sdpa = copy.deepcopy(model)
    bare_sdpa.set_attn_implementation("sdpa")
    backend = GPT2Backend(model, IdTokenizer(), name="gpt2-small-random", source="GPT2Config()")
    session = Session(backend, sampling=SamplingConfig(temperature=0.0))
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, n)
    session.feed(" ".join(str(int(i)) for i in ids))
    params = sum(p.numel() for p in model.parameters())

    def bare(m, attentions: bool):
        cache = DynamicCache(config=m.config)
        last = {}

        def step(t: int) -> None:
            with torch.inference_mode():
                out = m(
                    input_ids=torch.tensor([[int(ids[t])]]),
                    cache=cache,
                    use_cache=True,
                    output_attentions=attentions,
                )
                last["logits"] = out.logits[0, -1]

        step.last = last
        return step

    backend_s = np.zeros(n)
    inner_step = backend.step

    def timed_backend_step(token_id: int):
        t0 = perf()
        out = inner_step(token_id)
        backend_s[backend.position - 1] = perf() - t0
        return out

    backend.step = timed_backend_step  # to split Session.step into the backend's part and the rest
    methods = {
        "memviz": lambda t: session.step(),
        "bare_sdpa": bare(bare_sdpa, False),
        "bare_eager": bare(bare_eager, False),
        "bare_eager_attentions": bare(bare_eager, True),  # same model, its own cache
    }
    names = list(methods)
    times = {m: np.zeros(n) for m in names}
    with torch.inference_mode():  # warm-up of every path (first calls allocate)
        for m in (model, bare_eager, bare_sdpa):
            m(input_ids=torch.tensor([[1, 2, 3]]))
    t_all = perf()
    for t in range(n):
        order = names[t % len(names) :] + names[: t % len(names)]
        for name in order:
            t0 = perf()
            methods[name](t)
            times[name][t] = perf() - t0
        if (t + 1) % 128 == 0:
            log(f"  gpt2: {t + 1}/{n} tokens ({perf() - t_all:.0f} s)")
    # the same numbers: memviz's logits equal the bare eager loop's
    last_memviz = torch.from_numpy(np.log(session.last_distribution))
    last_bare = torch.log_softmax(methods["bare_eager"].last["logits"].double(), -1)
    max_diff = float((last_memviz - last_bare).abs().max())

    result = {
        "model": f"GPT2LMHeadModel(GPT2Config()), random weights, {params / 1e6:.1f}M parameters, float32",
        "memviz_path": "Session.step(): GPT2Backend.step (eager, KV cache, attentions, key hook) + softmax "
        "+ top-k + Trace.append",
        "window_steps": window,
        "max_abs_logprob_difference_memviz_vs_bare_eager": max_diff,
        "contexts": {},
    }
    for c in contexts:
        sl = slice(c - window, c)
        row = {name: ms_stats(times[name][sl]) for name in names}
        row["memviz_backend_step_part"] = ms_stats(backend_s[sl])
        row["memviz_session_rest_part"] = ms_stats(times["memviz"][sl] - backend_s[sl])
        for base in ("bare_sdpa", "bare_eager", "bare_eager_attentions"):
            row[f"ratio_vs_{base}"] = round(row["memviz"]["p50"] / row[base]["p50"], 3)
            row[f"paired_ratio_vs_{base}"] = round(float(np.median(times["memviz"][sl] / times[base][sl])), 3)
        result["contexts"][str(c)] = row
        log(
            f"  context {c:5d}: memviz {row['memviz']['p50']:.2f} ms/token (p95 {row['memviz']['p95']:.2f}); "
            f"bare sdpa {row['bare_sdpa']['p50']:.2f}, bare eager {row['bare_eager']['p50']:.2f}, "
            f"eager+attentions {row['bare_eager_attentions']['p50']:.2f} (memviz: backend "
            f"{row['memviz_backend_step_part']['p50']:.2f} + session {row['memviz_session_rest_part']['p50']:.2f}); ratio vs sdpa "
            f"{row['ratio_vs_bare_sdpa']:.3f}, vs eager {row['ratio_vs_bare_eager']:.3f}"
        )
    ratios = [result["contexts"][str(c)]["ratio_vs_bare_sdpa"] for c in contexts]
    ratios_eager = [result["contexts"][str(c)]["ratio_vs_bare_eager"] for c in contexts]
    result["worst_ratio_vs_bare_sdpa"] = max(ratios)
    result["worst_ratio_vs_bare_eager"] = max(ratios_eager)
    result["target_ratio_max"] = TARGETS["gpt2_overhead_ratio_max"]
    result["target_met_vs_bare_eager"] = max(ratios_eager) <= TARGETS["gpt2_overhead_ratio_max"]
    result["target_met_vs_bare_sdpa"] = max(ratios) <= TARGETS["gpt2_overhead_ratio_max"]
    result["total_s"] = {name: round(float(times[name].sum()), 3) for name in names}

    ctx["gpt2_model"] = bare_eager  # eager, no hook: for the full re-run
    ctx["gpt2_ids"] = ids
    ctx["gpt2_memviz_step_s"] = times["memviz"]
    ctx["gpt2_session"] = session
    del bare_sdpa
    return result


def bench_incremental(quick: bool, ctx: dict) -> dict:
    """Stepping n tokens through the KV cache vs a full forward pass (with attentions) at every step.

    One-shot attention viewers re-run the whole prefix to show step t. The full re-run is timed at
    sampled prefix lengths and summed over t = 1..n by linear interpolation; the incremental time
    is the sum of memviz's measured Session.step times over the first n tokens (section gpt2).
    """
    import torch

    if "gpt2_model" not in ctx:
        raise RuntimeError("needs the gpt2 section")
    model, ids, step_s = ctx["gpt2_model"], ctx["gpt2_ids"], ctx["gpt2_memviz_step_s"]
    n = 64 if quick else 512
    n = min(n, len(step_s))
    lengths = sorted({int(x) for x in np.linspace(1, n, 5 if quick else 12)})
    measured = []
    with torch.inference_mode():
        for length in lengths:
            x = torch.tensor([ids[:length].tolist()])
            best = []
            for _ in range(1 if length > 256 or quick else 2):
                t0 = perf()
                out = model(input_ids=x, output_attentions=True, use_cache=False)
                assert len(out.attentions) == model.config.n_layer
                best.append(perf() - t0)
            measured.append(float(np.median(best)))
            log(f"  full forward of {length:4d} tokens with attentions: {measured[-1] * 1e3:.0f} ms")
    full_total = float(np.interp(np.arange(1, n + 1), lengths, measured).sum())
    incremental_total = float(step_s[:n].sum())
    speedup = full_total / incremental_total
    log(
        f"  n={n}: incremental (memviz) {incremental_total:.1f} s, full re-run every step {full_total:.1f} s "
        f"(estimated) -> {speedup:.1f}x"
    )
    return {
        "n": n,
        "full_forward_ms_by_length": {
            str(k): round(v * 1e3, 2) for k, v in zip(lengths, measured, strict=True)
        },
        "full_rerun_total_s_estimated": round(full_total, 2),
        "incremental_total_s": round(incremental_total, 2),
        "speedup": round(speedup, 2),
        "target_min": TARGETS["incremental_speedup_min"],
        "target_met": speedup >= TARGETS["incremental_speedup_min"]
        if n == 512
        else None,  # the target is at n = 512
    }


# ------------------------------------------------------------------------------------------------
# LSTM 2 x 512
# ------------------------------------------------------------------------------------------------
def bench_lstm(quick: bool, ctx: dict) -> dict:
    import torch

    from memviz.backends.lstm import CharTokenizer, LSTMBackend, LSTMLanguageModel
    from memviz.core.sampling import SamplingConfig
    from memviz.core.session import Session

    torch.manual_seed(0)
    chars = [chr(c) for c in range(32, 127)] + ["\n", "\t"]
    tokenizer = CharTokenizer(["\ufffd", *chars], unk=0)
    vocab, emb, hidden, layers = len(tokenizer.tokens), 64, 512, 2
    model = LSTMLanguageModel(vocab, emb, hidden, layers).eval()
    backend = LSTMBackend(model, tokenizer, name="lstm-2x512-random", source="random")
    n = 300 if quick else 1500
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(chars, n))
    ids = tokenizer.encode(text).ids
    session = Session(backend, sampling=SamplingConfig(temperature=0.0))
    session.feed(text)

    backend_only = LSTMBackend(model, tokenizer, name="b", source="b")
    state = {"s": None, "d": None}

    def bare_step(t: int) -> None:
        # nn.LSTM without oneDNN (ATen's own kernels): its fastest single-step path on this CPU
        with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
            logits, state["s"] = model(torch.tensor([[ids[t]]]), state["s"])

    def bare_step_default(t: int) -> None:
        with torch.inference_mode():
            logits, state["d"] = model(torch.tensor([[ids[t]]]), state["d"])

    methods = {
        "memviz_session_step": lambda t: session.step(),
        "memviz_backend_step": lambda t: backend_only.step(ids[t]),
        "bare_nn_lstm_step": bare_step,
    }
    names = list(methods)
    times = {m: np.zeros(n) for m in names}
    for t in range(n):
        order = names[t % len(names) :] + names[: t % len(names)]
        for name in order:
            t0 = perf()
            methods[name](t)
            times[name][t] = perf() - t0
    n_default = 40 if quick else 150
    default_times = []
    for t in range(n_default):
        t0 = perf()
        bare_step_default(t)
        default_times.append(perf() - t0)
    skip = min(50, n // 5)  # warm-up
    result = {
        "model": f"LSTMLanguageModel(vocab={vocab}, embedding={emb}, hidden={hidden}, layers={layers}), random weights",
        "steps": n - skip,
    }
    for name in names:
        result[name] = ms_stats(times[name][skip:])
    result["bare_nn_lstm_step_default_onednn"] = ms_stats(default_times[5:])
    base = result["bare_nn_lstm_step"]["p50"]
    result["ratio_session_vs_bare"] = round(result["memviz_session_step"]["p50"] / base, 3)
    result["ratio_backend_vs_bare"] = round(result["memviz_backend_step"]["p50"] / base, 3)
    result["ratio_session_vs_bare_default_onednn"] = round(
        result["memviz_session_step"]["p50"] / result["bare_nn_lstm_step_default_onednn"]["p50"], 3
    )
    log(
        f"  session.step {result['memviz_session_step']['p50']:.3f} ms, backend.step "
        f"{result['memviz_backend_step']['p50']:.3f} ms, nn.LSTM step {base:.3f} ms (oneDNN off), "
        f"{result['bare_nn_lstm_step_default_onednn']['p50']:.3f} ms (default, oneDNN) "
        f"-> session/bare {result['ratio_session_vs_bare']:.2f}x, backend/bare {result['ratio_backend_vs_bare']:.2f}x"
    )
    return result


# ------------------------------------------------------------------------------------------------
# Synthetic traces
# ------------------------------------------------------------------------------------------------
GPT2_SMALL_INFO = dict(
    name="gpt2-small-synthetic",
    source="synthetic",
    architecture="gpt2",
    num_layers=12,
    hidden_size=768,
    num_heads=12,
    vocab_size=50257,
    context_size=1024,
)


def gpt2_records(T: int, seed: int = 0, start: int = 0, memory_entries: int = 0):
    """StepRecords with GPT-2 small's shape and random (row-normalised) attention.

    With memory_entries: also what a run with a long-term memory records (k = 16 neighbours).
    """
    from memviz.core.trace import KEPT_CANDIDATES, StepRecord

    rng = np.random.default_rng(seed + start)
    L, A = GPT2_SMALL_INFO["num_layers"], GPT2_SMALL_INFO["num_heads"]
    for t in range(start, T):
        row = rng.random((L, A, t + 1), dtype=np.float32) ** 4
        row /= row.sum(-1, keepdims=True)
        probs = np.sort(rng.random(KEPT_CANDIDATES).astype(np.float32))[::-1] / KEPT_CANDIDATES
        memory = {}
        if memory_entries:
            memory = {
                "memory_ids": rng.integers(1, memory_entries + 1, 16),
                "memory_scores": np.sort(-rng.random(16).astype(np.float32) * 50)[::-1].copy(),
                "lm_topk_ids": rng.integers(0, 50257, KEPT_CANDIDATES),
                "lm_topk_probs": probs,
                "knn_topk_ids": rng.integers(0, 50257, KEPT_CANDIDATES),
                "knn_topk_probs": probs,
            }
        yield StepRecord(
            token_id=int(rng.integers(50257)),
            token_text=f" tok{t}",
            generated=t > T // 2,
            topk_ids=rng.integers(0, 50257, KEPT_CANDIDATES),
            topk_probs=probs,
            internals={"attention_row": row},
            memory=memory,
        )


def lstm_records(T: int, layers: int = 2, hidden: int = 512, seed: int = 0, start: int = 0):
    from memviz.core.trace import KEPT_CANDIDATES, StepRecord

    rng = np.random.default_rng(seed + start)
    for t in range(start, T):
        gates = rng.random((layers, 4, hidden), dtype=np.float32)
        gates[:, 2] = gates[:, 2] * 2 - 1
        cell = rng.standard_normal((layers, hidden), dtype=np.float32)
        yield StepRecord(
            token_id=int(rng.integers(97)),
            token_text=chr(97 + t % 26),
            generated=False,
            topk_ids=rng.integers(0, 97, KEPT_CANDIDATES),
            topk_probs=np.full(KEPT_CANDIDATES, 0.05, np.float32),
            internals={"gates": gates, "cell": cell, "hidden": np.tanh(cell) * gates[:, 3]},
        )


def new_trace(arch: str, memory: dict | None = None):
    from memviz.backends.base import ModelInfo
    from memviz.core.trace import Trace

    if arch == "gpt2":
        return Trace.for_model(ModelInfo(**GPT2_SMALL_INFO), memory=memory)
    info = ModelInfo(
        name="lstm-2x512-synthetic",
        source="synthetic",
        architecture="lstm",
        num_layers=2,
        hidden_size=512,
        num_heads=0,
        vocab_size=97,
        context_size=None,
    )
    return Trace.for_model(info)


# ------------------------------------------------------------------------------------------------
# Drawing
# ------------------------------------------------------------------------------------------------
def discover_panels():
    """PANEL_CLASSES, or (while it is still empty) every concrete Panel subclass in memviz.panels."""
    import importlib
    import pkgutil

    import memviz.panels as pkg
    from memviz.panels.base import Panel
    from memviz.panels.registry import panel_classes

    registered = list(panel_classes())
    if registered:
        return registered, "PANEL_CLASSES"
    for info in pkgutil.iter_modules(pkg.__path__):
        try:
            importlib.import_module(f"memviz.panels.{info.name}")
        except Exception as exc:  # a panel being written right now may not import yet
            log(f"  (skipping memviz.panels.{info.name}: {exc.__class__.__name__}: {exc})")
    found, seen = [], set()
    stack = list(Panel.__subclasses__())
    while stack:
        cls = stack.pop(0)
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
        if (
            cls.__module__.startswith("memviz.panels")
            and "render" in _own_methods(cls)
            and cls.name != "panel"
        ):
            found.append(cls)
    return found, "discovered Panel subclasses (PANEL_CLASSES empty)"


def _own_methods(cls) -> set[str]:
    names = set()
    for klass in cls.__mro__:
        if klass.__name__ == "Panel":
            break
        names.update(vars(klass))
    return names


def _delete_now(app) -> None:
    """Carry out deleteLater outside an event loop: processEvents alone leaves deferred deletions
    pending, and a case's widgets would live on (and take events) through the later cases."""
    from PySide6.QtCore import QEvent

    app.processEvents()
    app.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


def _main_window_steps(
    app, arch: str, make_records, T: int, steps: int, memory: dict | None, warmup: int = 0
) -> list[float]:
    """The app's own path: the worker's `stepped` signal, then MainWindow.redraw and the paint."""
    from PySide6.QtCore import QSettings

    from memviz.ui.main_window import MainWindow

    trace = new_trace(arch, memory)
    for record in make_records(T - steps - warmup):
        trace.append(record)
    with tempfile.TemporaryDirectory() as folder:
        window = MainWindow(settings=QSettings(str(Path(folder) / "s.ini"), QSettings.IniFormat))
        window.resize(1600, 1000)
        window.show()
        window.open_trace(trace)
        window.redraw()
        app.processEvents()
        times = []
        for n, record in enumerate(make_records(T, start=T - steps - warmup)):
            index = trace.append(record)
            t0 = perf()
            window._on_stepped(index, 20.0)
            window.redraw()
            app.processEvents()
            app.processEvents()
            if n >= warmup:
                times.append(perf() - t0)
        window.close()
        if hasattr(window, "shutdown"):
            window.shutdown()
        window.deleteLater()
        _delete_now(app)
    return times


def bench_draw(quick: bool, ctx: dict) -> dict:
    """Per step: append one record, then every panel renders it and repaints (offscreen)."""
    from PySide6.QtCore import qInstallMessageHandler
    from PySide6.QtWidgets import QGridLayout, QWidget

    from memviz.core.view import ViewState
    from memviz.panels.view_model import ViewModel

    def quiet(mode, context, message):  # the offscreen platform's "does not support ..." notes
        if "does not support" not in message:
            sys.stderr.write(message + "\n")

    qInstallMessageHandler(quiet)
    from memviz.ui.app import application

    app = application()  # the app's own QApplication set-up (its fonts among it)
    classes, where = discover_panels()
    log(f"  panels ({where}): {', '.join(c.__name__ for c in classes) or 'none'}")
    sizes = [256] if quick else [256, 1024]
    steps = (
        8 if quick else 120
    )  # a p95 over 40 steps was the second-largest time: one hiccup of the machine decided it
    warmup = 2 if quick else 8  # steps drawn before the timed ones (first-use costs: caches, glyphs)
    result = {
        "panels_from": where,
        "steps_timed": steps,
        "warmup_steps": warmup,
        "window": "1600x1000, 3 columns of panels",
        "cases": {},
        "memory": "GPT-2 cases recall from a MemoryStore of 10,000 entries (k = 16)",
    }
    store_folder = tempfile.TemporaryDirectory()
    entries = 10_000
    store_path = _make_store(Path(store_folder.name) / "draw.sqlite", entries, GPT2_SMALL_INFO["name"])
    memory = {
        "store": str(store_path),
        "entries": entries,
        "model": GPT2_SMALL_INFO["name"],
        "k": 16,
        "lambda": 0.25,
        "temperature": 1.0,
    }

    def gpt2_with_memory(T: int, start: int = 0):
        return gpt2_records(T, start=start, memory_entries=entries)

    for arch, make_records in (("gpt2", gpt2_with_memory), ("lstm", lstm_records)):
        for T in sizes if arch == "gpt2" else sizes[-1:]:
            trace = new_trace(arch, memory if arch == "gpt2" else None)
            for record in make_records(T - steps - warmup):
                trace.append(record)
            # the state the timed steps use (layer 3, head 5): the first step does not switch heads
            view = ViewModel(ViewState(cursor=len(trace) - 1, theme="dark", layer=3, head=5))
            container = QWidget()
            grid = QGridLayout(container)
            panels = []
            for cls in classes:
                if not cls.supports(trace):
                    continue
                try:
                    panel = cls(view)
                except Exception as exc:
                    log(f"  ({cls.__name__} cannot be built: {exc.__class__.__name__}: {exc})")
                    continue
                grid.addWidget(panel, len(panels) // 3, len(panels) % 3)
                panels.append(panel)
            if not panels:
                continue
            container.resize(1600, 1000)
            container.show()
            for panel in panels:
                panel.set_trace(trace)
                panel.render(view.state)
            app.processEvents()
            per_panel = {p.__class__.__name__: [] for p in panels}
            totals = []
            for n, record in enumerate(make_records(T, start=T - steps - warmup)):
                trace.append(record)
                state = ViewState(cursor=len(trace) - 1, theme="dark", layer=3, head=5)
                total = 0.0
                for panel in panels:
                    t0 = perf()
                    panel.render(state)
                    app.processEvents()
                    panel.repaint()
                    dt = perf() - t0
                    if n >= warmup:
                        per_panel[panel.__class__.__name__].append(dt)
                    total += dt
                if n >= warmup:
                    totals.append(total)
            # scrubbing: the cursor jumps back (nothing new in the trace)
            rng = np.random.default_rng(1)
            scrub = []
            for cursor in rng.integers(T // 2, T, steps):
                state = ViewState(cursor=int(cursor), theme="dark", layer=3, head=5, follow=False)
                t0 = perf()
                for panel in panels:
                    panel.render(state)
                app.processEvents()
                container.repaint()
                scrub.append(perf() - t0)
            container.close()
            container.deleteLater()
            _delete_now(app)
            window_times = _main_window_steps(app, arch, make_records, T, steps, trace.memory, warmup)
            case = {
                "main_window_new_step": ms_stats(window_times),
                "all_panels_new_step": ms_stats(totals),
                "all_panels_scrub": ms_stats(scrub),
                "per_panel_new_step": {k: ms_stats(v) for k, v in per_panel.items()},
            }
            case["target_met"] = (
                case["main_window_new_step"]["p95"] <= TARGETS["draw_p95_ms_max"]
                and case["all_panels_new_step"]["p95"] <= TARGETS["draw_p95_ms_max"]
            )
            key = f"{arch}_T{T}"
            result["cases"][key] = case
            log(
                f"  {key}: MainWindow.redraw p50 {case['main_window_new_step']['p50']:.2f} ms, p95 "
                f"{case['main_window_new_step']['p95']:.2f} ms"
            )
            log(
                f"  {key}: all panels p50 {case['all_panels_new_step']['p50']:.2f} ms, p95 "
                f"{case['all_panels_new_step']['p95']:.2f} ms; scrub p95 {case['all_panels_scrub']['p95']:.2f} ms"
            )
            for k, v in case["per_panel_new_step"].items():
                log(f"      {k:24s} p50 {v['p50']:7.2f}  p95 {v['p95']:7.2f} ms")
    store_folder.cleanup()
    gpt2_cases = [v for k, v in result["cases"].items() if k.startswith("gpt2")]
    result["target_p95_ms_max"] = TARGETS["draw_p95_ms_max"]
    result["target_met"] = bool(gpt2_cases) and all(c["target_met"] for c in gpt2_cases)
    return result


# ------------------------------------------------------------------------------------------------
# Long-term memory
# ------------------------------------------------------------------------------------------------
def store_index(n: int, dim: int, kind: str):
    """The store's own index (MemoryStore._new_index: IndexIDMap2 over flat L2 or HNSW), or flat."""
    import faiss

    from memviz.memory.store import EXACT_LIMIT, MemoryStore

    if kind == "store":
        return MemoryStore._new_index(SimpleNamespace(key_dim=dim), n)
    if kind == "hnsw":
        return MemoryStore._new_index(SimpleNamespace(key_dim=dim), EXACT_LIMIT + 1)
    return faiss.IndexIDMap2(faiss.IndexFlatL2(dim))


def _make_store(path: Path, entries: int, model_name: str) -> Path:
    from memviz.memory.store import MemoryStore

    keys = KeyDistribution(768).sample(entries, np.random.default_rng(3))
    backend = KeyBackend(keys, name=model_name)
    with MemoryStore.open(path, backend=backend, create=True) as store:
        store.add_document(" ".join(str(i % 50257) for i in range(entries + 1)), "synthetic", backend)
    return path


class KeyBackend:
    """A stand-in model for filling a real MemoryStore: each step returns the next synthetic key."""

    def __init__(self, keys: np.ndarray, name: str = "bench-keys") -> None:
        from memviz.backends.base import ModelInfo

        self.keys = keys
        self.info = ModelInfo(
            name=name,
            source="synthetic",
            architecture="synthetic",
            num_layers=1,
            hidden_size=keys.shape[1],
            num_heads=0,
            vocab_size=50257,
            context_size=None,
        )
        self._i = 0

    def encode(self, text: str):
        from memviz.backends.base import Encoding

        return Encoding(ids=[int(x) for x in text.split() if x.isdigit()] or [0])

    def token_text(self, token_id: int) -> str:
        return f" t{token_id}"

    def reset(self) -> None:
        self._i = 0

    @property
    def position(self) -> int:
        return self._i

    def step(self, token_id: int):
        from memviz.backends.base import StepOutput

        key = self.keys[self._i % len(self.keys)]
        self._i += 1
        return StepOutput(logits=None, memory_key=key)

    def fingerprint(self) -> str:
        return "benchmark-keys"

    # The Backend protocol's memory side: the store asks for the key size and a document's keys.
    memory_key_point = "synthetic"
    device = "cpu"

    @property
    def memory_key_dim(self) -> int:
        return int(self.keys.shape[1])

    def document_keys(self, token_ids: list[int]):
        """The keys after tokens 0 .. n-2, cycling through the synthetic keys."""
        for i in range(len(token_ids) - 1):
            yield self.keys[i % len(self.keys)]


def _time_queries(search, queries: np.ndarray) -> list[float]:
    out = []
    for q in queries:
        t0 = perf()
        search(q)
        out.append(perf() - t0)
    return out


def bench_memory(quick: bool, ctx: dict) -> dict:
    import faiss

    from memviz.memory import store as store_module
    from memviz.memory.store import MemoryStore

    dim, k = 768, 10
    sizes = [10_000] if quick else [n for n in (10_000, 100_000, 1_000_000) if n <= MEMORY_MAX[0]]
    n_queries = 50 if quick else 300
    dist = KeyDistribution(dim)
    rng = np.random.default_rng(123)
    queries = dist.sample(n_queries, rng)
    result = {
        "index": f"memviz.memory.store: MemoryStore._new_index (IndexIDMap2; exact IndexFlatL2 up to "
        f"{store_module.EXACT_LIMIT} entries, then HNSW M={store_module.HNSW_M} "
        f"efConstruction={store_module.HNSW_EF_CONSTRUCTION} efSearch={store_module.HNSW_EF_SEARCH})",
        "keys": KeyDistribution.description,
        "faiss_threads": faiss.omp_get_max_threads(),
        "queries": n_queries,
        "k": k,
        "sizes": {},
    }
    for n in sizes:
        log(f"  memory: {n:,} entries")
        flat = store_index(n, dim, "flat")
        hnsw = store_index(n, dim, "hnsw")
        data_rng = np.random.default_rng(n)
        build_hnsw = build_flat = 0.0
        chunk = 50_000
        for start in range(0, n, chunk):
            x = dist.sample(min(chunk, n - start), data_rng)
            ids = np.arange(start, start + len(x), dtype=np.int64)
            t0 = perf()
            flat.add_with_ids(x, ids)
            build_flat += perf() - t0
            t0 = perf()
            hnsw.add_with_ids(x, ids)
            build_hnsw += perf() - t0
            if n >= 1_000_000 and (start + chunk) % 200_000 == 0:
                log(f"    HNSW built {start + chunk:,} ({build_hnsw:.0f} s)")
        exact_d, exact_i = flat.search(queries, k)  # batched: the ground truth
        hnsw_q = _time_queries(lambda q, index=hnsw: index.search(q[None, :], k), queries)
        flat_queries = queries[: 20 if n >= 1_000_000 else n_queries]
        flat_q = _time_queries(lambda q, index=flat: index.search(q[None, :], k), flat_queries)
        _, hnsw_i = hnsw.search(queries, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(hnsw_i, exact_i, strict=True)]))
        row = {
            "hnsw": {
                "query_ms": ms_stats(hnsw_q),
                "recall_at_10": round(recall, 4),
                "build_s": round(build_hnsw, 2),
                "build_entries_per_s": round(n / build_hnsw),
            },
            "flat": {
                "query_ms": ms_stats(flat_q),
                "recall_at_10": 1.0,
                "build_s": round(build_flat, 3),
                "build_entries_per_s": round(n / max(build_flat, 1e-9)),
            },
            "store_uses": "flat" if n <= store_module.EXACT_LIMIT else "hnsw",
        }
        result["sizes"][str(n)] = row
        log(
            f"    HNSW p50 {row['hnsw']['query_ms']['p50']:.3f} ms p95 {row['hnsw']['query_ms']['p95']:.3f} ms "
            f"recall@10 {recall:.3f}, build {n / build_hnsw:,.0f}/s; flat p50 {row['flat']['query_ms']['p50']:.2f} ms"
        )
        del flat, hnsw
        gc.collect()

    # the whole path the Session calls: MemoryStore.search (lock, change check, values), and adding
    store_sizes = [10_000] if quick else [10_000, 100_000]
    result["store_end_to_end"] = {}
    for n in store_sizes:
        keys = dist.sample(n, np.random.default_rng(7))
        backend = KeyBackend(keys)
        with tempfile.TemporaryDirectory() as folder:
            store = MemoryStore.open(Path(folder) / "bench.sqlite", backend=backend, create=True)
            text = " ".join(str(i % 50257) for i in range(n + 1))
            t0 = perf()
            added = store.add_document(text, "synthetic", backend)
            build = perf() - t0
            store_q = _time_queries(lambda q, s=store: s.search(q, k), queries)
            raw_q = _time_queries(lambda q, s=store: s._index.search(q[None, :], k), queries)
            # what the memory panel reads at each step: the k records' snippets (one document of n tokens)
            id_sets = np.random.default_rng(8).integers(0, added.entries, (len(queries), k))
            get_t = _time_queries(lambda ids, s=store: s.get(ids), id_sets)
            db_mb = sum(p.stat().st_size for p in Path(folder).iterdir()) / 2**20
            store.close()
        row = {
            "entries": added.entries,
            "index": "flat" if n <= store_module.EXACT_LIMIT else "hnsw",
            "search_ms": ms_stats(store_q),
            "raw_index_search_ms": ms_stats(raw_q),
            "get_records_ms": ms_stats(get_t),
            "document_chars": len(text),
            "add_entries_per_s": round(added.entries / build),
            "disk_mb": round(db_mb, 1),
        }
        result["store_end_to_end"][str(n)] = row
        log(
            f"  MemoryStore {n:,}: search p50 {row['search_ms']['p50']:.3f} ms (index alone "
            f"{row['raw_index_search_ms']['p50']:.3f}), get {k} records p50 {row['get_records_ms']['p50']:.3f} ms "
            f"(a {len(text):,}-character document), add {row['add_entries_per_s']:,}/s, {db_mb:.0f} MB on disk"
        )
    largest = result["sizes"][str(sizes[-1])]["hnsw"]
    result["target"] = {
        "p50_ms_max_at_1M": TARGETS["memory_p50_ms_max_at_1M"],
        "recall_min": TARGETS["memory_recall10_min"],
    }
    if "1000000" in result["sizes"]:
        overhead = max(
            0.0,
            result["store_end_to_end"]["10000"]["search_ms"]["p50"]
            - result["store_end_to_end"]["10000"]["raw_index_search_ms"]["p50"],
        )
        result["store_p50_ms_at_1M_estimated"] = round(largest["query_ms"]["p50"] + overhead, 4)
        result["target_met"] = (
            result["store_p50_ms_at_1M_estimated"] <= TARGETS["memory_p50_ms_max_at_1M"]
            and largest["recall_at_10"] >= TARGETS["memory_recall10_min"]
        )
    else:
        result["target_met"] = None  # the 1M index is built in the full run only
    if not quick:
        # the worst case for a graph index: isotropic Gaussian keys
        iso = KeyDistribution(dim, isotropic=True)
        x = iso.sample(100_000, np.random.default_rng(5))
        q = iso.sample(200, np.random.default_rng(6))
        flat, hnsw = store_index(0, dim, "flat"), store_index(0, dim, "hnsw")
        ids = np.arange(len(x), dtype=np.int64)
        flat.add_with_ids(x, ids)
        t0 = perf()
        hnsw.add_with_ids(x, ids)
        build = perf() - t0
        _, ei = flat.search(q, k)
        _, hi = hnsw.search(q, k)
        times_q = _time_queries(lambda v: hnsw.search(v[None, :], k), q)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(hi, ei, strict=True)]))
        result["isotropic_100k_hnsw"] = {
            "query_ms": ms_stats(times_q),
            "recall_at_10": round(recall, 4),
            "build_entries_per_s": round(len(x) / build),
        }
        log(f"  isotropic 100k HNSW: p50 {ms_stats(times_q)['p50']:.3f} ms, recall@10 {recall:.3f}")
    return result


# ------------------------------------------------------------------------------------------------
# Trace memory
# ------------------------------------------------------------------------------------------------
def bench_trace(quick: bool, ctx: dict) -> dict:
    T = 256 if quick else 1024
    gc.collect()
    rss0 = rss_bytes()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    trace = new_trace("gpt2")
    for record in gpt2_records(T):
        trace.append(record)
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = rss_bytes()
    attention_dtype = str(trace.attention_rows_at(0).dtype)
    result = {
        "tokens": T,
        "shape": "12 layers x 12 heads (GPT-2 small), synthetic random attention",
        "attention_dtype_in_ram": attention_dtype,
        "trace_nbytes_mb": round(trace.nbytes / 2**20, 2),
        "tracemalloc_mb": round((current - base) / 2**20, 2),
        "tracemalloc_peak_mb": round((peak - base) / 2**20, 2),
        "rss_delta_mb": round((rss1 - rss0) / 2**20, 2),
        "dense_float32_would_be_mb": round(12 * 12 * T * T * 4 / 2**20, 1),
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.memviz"
        t0 = perf()
        trace.save(path)
        result["save_s"] = round(perf() - t0, 2)
        result["disk_mb_random_attention"] = round(path.stat().st_size / 2**20, 2)
        session = ctx.get("gpt2_session")
        if session is not None and len(session.trace) >= T:
            real = session.trace
            result["real_gpt2_small_trace"] = {
                "tokens": len(real),
                "nbytes_mb": round(real.nbytes / 2**20, 2),
            }
            real.save(path)
            result["real_gpt2_small_trace"]["disk_mb"] = round(path.stat().st_size / 2**20, 2)
    result["target_mb_max"] = TARGETS["trace_ram_mb_max"]
    result["target_met"] = (
        max(result["trace_nbytes_mb"], result["tracemalloc_mb"]) <= TARGETS["trace_ram_mb_max"]
    )
    log(
        f"  {T}-token GPT-2 small trace: nbytes {result['trace_nbytes_mb']} MB, tracemalloc "
        f"{result['tracemalloc_mb']} MB, RSS +{result['rss_delta_mb']} MB ({attention_dtype}); disk "
        f"{result['disk_mb_random_attention']} MB (random attention)"
        + (
            f", {result['real_gpt2_small_trace']['disk_mb']} MB (GPT-2 small run)"
            if "real_gpt2_small_trace" in result
            else ""
        )
    )
    return result


# ------------------------------------------------------------------------------------------------
# Start-up
# ------------------------------------------------------------------------------------------------
def _probe(args: list[str], env: dict) -> dict:
    launch = time.time()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("startup_probe.py")), *args, repr(launch)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"startup probe {args} failed: {proc.stderr.strip().splitlines()[-3:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_stand_in_models(folder: Path) -> dict[str, Path]:
    """Random-weight models with the bundled models' shapes (used when models/ has none)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from memviz.backends.gpt2 import _quiet_transformers
    from memviz.backends.lstm import CharTokenizer, LSTMLanguageModel, save_lstm_checkpoint

    _quiet_transformers()
    torch.manual_seed(0)
    text = Path(__file__).read_text()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [text], vocab_size=1000, min_frequency=1, special_tokens=["<|endoftext|>"], show_progress=False
    )
    tok = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    cfg = GPT2Config(
        n_layer=4, n_head=4, n_embd=256, n_positions=512, vocab_size=4096, bos_token_id=0, eos_token_id=0
    )
    gpt2 = folder / "stand-in-gpt2"
    GPT2LMHeadModel(cfg).save_pretrained(gpt2)
    tok.save_pretrained(gpt2)
    lstm = folder / "stand-in-lstm"
    chars = CharTokenizer.from_text(text)
    save_lstm_checkpoint(LSTMLanguageModel(len(chars.tokens), 64, 256, 2), chars, lstm)
    return {"gpt2": gpt2, "lstm": lstm}


def bench_startup(quick: bool, ctx: dict) -> dict:
    from memviz.backends.registry import bundled_names

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1")
    repeats = 1 if quick else 3
    result: dict = {"repeats": repeats, "platform": "offscreen"}
    windows = [_probe(["window"], env) for _ in range(repeats)]
    result["window"] = {
        "what": windows[0].get("what"),
        "visible_s": ms_stats([w["visible_s"] for w in windows]),  # ms_stats: milliseconds
        "interpreter_s": ms_stats([w["interpreter_s"] for w in windows]),
        "import_s": ms_stats([w["import_s"] for w in windows]),
        "runs": windows,
    }
    visible = float(np.median([w["visible_s"] for w in windows]))
    result["window_median_s"] = round(visible, 3)
    result["target_s_max"] = TARGETS["window_s_max"]
    result["target_met"] = bool(visible <= TARGETS["window_s_max"])
    log(
        f"  window visible {visible:.2f} s after launch (median of {repeats}: interpreter "
        f"{result['window']['interpreter_s']['p50'] / 1e3:.2f} s, imports {result['window']['import_s']['p50'] / 1e3:.2f} s)"
    )
    names = bundled_names()
    result["bundled_models"] = names
    with tempfile.TemporaryDirectory() as folder:
        specs = {}
        for arch, name in (("gpt2", "python-docs-gpt2"), ("lstm", "python-docs-lstm")):
            specs[arch] = (name, "bundled") if name in names else None
        if any(v is None for v in specs.values()):
            stand_ins = make_stand_in_models(Path(folder))
            for arch, spec in specs.items():
                if spec is None:
                    specs[arch] = (
                        str(stand_ins[arch]),
                        "stand-in with the bundled shape, random weights (bundled model not installed yet)",
                    )
        result["model_ready"] = {}
        for arch, (spec, what) in specs.items():
            runs = [_probe(["model", spec], env) for _ in range(repeats)]
            app_runs = [] if quick else [_probe(["app-model", spec], env) for _ in range(repeats)]
            row = {
                "model": spec if what == "bundled" else Path(spec).name,
                "what": what,
                "backend_ready_s": ms_stats([r["ready_s"] for r in runs]),
                "backend_load_s": ms_stats([r["load_s"] for r in runs]),
                "first_step_s": ms_stats([r["first_step_s"] for r in runs]),
            }
            if app_runs:
                row["app_window_visible_s"] = ms_stats([r["visible_s"] for r in app_runs])
                row["app_model_loaded_s"] = ms_stats([r["ready_s"] for r in app_runs if r.get("ready_s")])
                row["app_messages"] = app_runs[0].get("messages")
            result["model_ready"][arch] = row
            in_app = ""
            if app_runs:
                in_app = (
                    f"; in the app: window {row['app_window_visible_s']['p50'] / 1e3:.2f} s, model loaded "
                    f"{row['app_model_loaded_s'].get('p50', float('nan')) / 1e3:.2f} s"
                )
            log(
                f"  {arch}: load_backend + first step {row['backend_ready_s']['p50'] / 1e3:.2f} s after launch "
                f"(first step {row['first_step_s']['p50']:.0f} ms){in_app} [{row['model']}: {what}]"
            )
    result["note"] = "all *_s figures are ms_stats of seconds-after-launch values, i.e. in milliseconds"
    return result


SECTIONS = {
    "gpt2": bench_gpt2,
    "incremental": bench_incremental,
    "lstm": bench_lstm,
    "draw": bench_draw,
    "trace": bench_trace,
    "startup": bench_startup,
    "memory": bench_memory,  # last: the 1M index takes minutes
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, under a minute")
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    parser.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (default: torch's own; the app's worker uses cores - 1)",
    )
    parser.add_argument(
        "--memory-max",
        type=int,
        default=1_000_000,
        metavar="N",
        help="largest long-term memory size in the full run (default 1,000,000)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        import faiss
        import torch

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    MEMORY_MAX[0] = args.memory_max
    chosen = list(SECTIONS) if not args.only else [s.strip() for s in args.only.split(",")]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if "incremental" in chosen and "gpt2" not in chosen:
        chosen.insert(chosen.index("incremental"), "gpt2")
    results = {
        "quick": args.quick,
        "argv": sys.argv[1:],
        "machine": machine_info(),
        "start": machine_state(),
        "targets": TARGETS,
        "sections": {},
    }
    if results["start"]["training_processes"]:
        log(
            f"warning: {results['start']['training_processes']} `memviz train` process(es) running: timings distorted"
        )
    log(f"load average {results['start']['load_average']}, {results['machine']['cpu_count']} CPUs")
    ctx: dict = {}
    t_start = perf()
    for name in chosen:
        log(f"[{name}]")
        before = machine_state()
        t0 = perf()
        section = SECTIONS[name](args.quick, ctx)
        section["seconds"] = round(perf() - t0, 1)
        section["machine_before"], section["machine_after"] = before, machine_state()
        results["sections"][name] = section
        if args.json:  # written after every section: a long run that fails late keeps what it measured
            Path(args.json).write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    results["end"] = machine_state()
    results["total_seconds"] = round(perf() - t_start, 1)
    summary = {}
    for name, section in results["sections"].items():
        if "target_met" in section:
            summary[name] = section["target_met"]
    results["targets_met"] = summary
    log(f"targets met: {summary}  ({results['total_seconds']:.0f} s in all)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
        log(f"wrote {args.json}")
    return 0


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))


if __name__ == "__main__":
    raise SystemExit(main())
