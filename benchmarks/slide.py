"""--slide (issue 16, item 3): reading past a transformer's window in windows that slide, against
`--intervene context:W` (every step a full re-read of the last W tokens), over the same tokens.

    OMP_NUM_THREADS=1 python benchmarks/slide.py                  # GPT-2 small shape, W = 256, 3W tokens
    OMP_NUM_THREADS=1 python benchmarks/slide.py --window 128 --layers 4 --json out.json

Nothing is downloaded: a GPT-2 built from its config (random weights: the same compute) with
n_positions = W. Reported: the time per token of each run (Session.step, everything a step records),
the re-prime passes alone (TransformerBackend.reprime of W - stride tokens, timed inside the slide
run), the rows of q/k kept on disk and the saved file, and `attention_rows_at` at steps of the last
window (a sliding trace's segment) against steps of the first. Then the backend alone, 64 steps
past the window: context:W's step (a full pass of W tokens) against --slide's step and re-prime.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine_info, machine_state, ms_stats  # noqa: E402


def build(folder: Path, window: int, layers: int):
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    text = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n" * 8
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([text] * 5, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    config = GPT2Config(n_layer=layers, n_head=12, n_embd=768, n_positions=window, vocab_size=50257)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def timed_run(session, ids: list[int]) -> tuple[list[float], list[float]]:
    """Per-step seconds (Session.step) and, where the backend re-primes, those passes alone."""
    backend = session.backend
    primes: list[float] = []
    original = getattr(backend, "reprime", None)
    if original is not None:

        def reprime(keep):
            t0 = time.perf_counter()
            out = original(keep)
            primes.append(time.perf_counter() - t0)
            return out

        backend.reprime = reprime
    session._queue.extend(ids)  # token ids as they are (the tokenizer's vocabulary is not the model's)
    steps = []
    try:
        while session._queue:
            t0 = time.perf_counter()
            if session.step() is None:
                break
            steps.append(time.perf_counter() - t0)
    finally:
        if original is not None:
            del backend.reprime
    return steps, primes


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--windows", type=int, default=3, help="tokens read: this many windows")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import numpy as np

    from memviz.backends.registry import load_backend
    from memviz.core.interventions import parse_all
    from memviz.core.session import Session

    W = args.window
    T = args.windows * W
    tmp = Path(tempfile.mkdtemp(prefix="memviz-bench-slide-"))
    backend = load_backend(str(build(tmp / "model", W, args.layers)), device="cpu")
    ids = [int(i) for i in np.random.default_rng(0).integers(0, len(backend.tokenizer), T)]
    report: dict = {"machine": machine_info(), "state_before": machine_state(), "window": W, "tokens": T}

    slide = Session(backend, slide=True)
    steps, primes = timed_run(slide, ids)
    trace = slide.trace
    saved = trace.save(tmp / "slide.memviz")
    first, last = range(W - 8, W), range(T - 8, T)
    rebuild = {}
    for name, where in (("first window", first), ("last window", last)):
        times = []
        for t in where:
            trace._attention._rows.clear()  # cold rows, warm keys: what a scrub costs
            t0 = time.perf_counter()
            trace.attention_rows_at(t)
            times.append(time.perf_counter() - t0)
        rebuild[name] = ms_stats(times)
    report["slide"] = {
        "stride": slide.stride,
        "steps": len(trace),
        "boundaries": len(trace.window_boundaries),
        "step_ms": ms_stats(steps),
        "reprime_ms": ms_stats(primes),
        "total_s": round(sum(steps), 2),
        "qk_rows_on_disk": int(trace._attention.rows_held),
        "disk_mb": round(trace.disk_nbytes / 1e6, 1),
        "saved_mb": round(saved.stat().st_size / 1e6, 1),
        "rows_at_ms": rebuild,
    }

    print(json.dumps({"slide": report["slide"]}), flush=True)

    # context:W past the window: every step a full pass over the last W tokens. Its first W steps
    # are restored in one pass (Backend.restore), then the next `probe` steps are timed.
    probe = min(64, T - W)
    backend.set_interventions(parse_all([f"context:{W}"]))
    backend.set_attention_storage("dense", "context:W")
    backend.restore(ids[:W])
    steps_w = []
    for token in ids[W : W + probe]:
        t0 = time.perf_counter()
        backend.step(token)
        steps_w.append(time.perf_counter() - t0)
    backend.set_interventions(())
    report["context_w"] = {"steps_timed": probe, "backend_step_ms": ms_stats(steps_w)}
    # the same for --slide's steps, backend alone: steps inside a window and the re-prime pass
    backend.set_attention_storage("qk")
    backend.restore(ids[:W])
    inside, primes_b = [], []
    for token in ids[W : W + probe]:
        if backend.position >= W:
            t0 = time.perf_counter()
            backend.reprime(W - slide.stride)
            primes_b.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        backend.step(token)
        inside.append(time.perf_counter() - t0)
    report["slide_backend"] = {"backend_step_ms": ms_stats(inside), "reprime_ms": ms_stats(primes_b)}
    report["state_after"] = machine_state()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
