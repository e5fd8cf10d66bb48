"""`memviz experiment copy` on the bundled GPT-2: 12 distances x 8 trials (issue 18's target: under
two minutes on 2 cores), timed end to end without the figure, and the model's load apart.

    python benchmarks/experiments.py [--model python-docs-gpt2] [--threads 2] [--distances 12] [--trials 8]

Prints the seconds and a JSON line (with the machine's load: other work on the cores slows it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    from common import machine_state

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="python-docs-gpt2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--distances", type=int, default=12, help="points on the distance axis (12)")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from memviz.backends.registry import load_backend
    from memviz.cli import build_parser
    from memviz.experiments import copy

    start = time.perf_counter()
    backend = load_backend(args.model, device="cpu")
    loaded = time.perf_counter() - start
    longest = copy.longest_distance(backend, args.n)
    distances = copy.default_distances(longest, args.distances)
    options = ["experiment", "copy", "--model", args.model, "--out", "unused", "--n", str(args.n)]
    options += ["--trials", str(args.trials), "--distances", ",".join(map(str, distances))]
    run_args = build_parser().parse_args(options)
    start = time.perf_counter()
    result = copy.run([backend], run_args)
    seconds = time.perf_counter() - start
    print(
        f"copy: {args.model}, {len(distances)} distances x {args.trials} trials (n = {args.n}, d up to "
        f"{distances[-1]}), {args.threads} threads: {seconds:.1f} s (model load {loaded:.1f} s)"
    )
    report = {
        "benchmark": "experiment copy",
        "model": args.model,
        "threads": args.threads,
        "distances": distances,
        "trials": args.trials,
        "n": args.n,
        "seconds": round(seconds, 2),
        "load_seconds": round(loaded, 2),
        "loss_second_at_0": round(result.rows[0]["loss_second"], 4),
        "machine": machine_state(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
