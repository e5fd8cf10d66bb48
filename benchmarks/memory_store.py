"""Long-term memory store: add rate (entries/s) and query time, on untrained models of real sizes.

    python benchmarks/memory_store.py [--entries 10000] [--embd 768]

Builds a GPT-2-shaped model (untrained; the key size is what matters for the index) and an LSTM in a
temporary folder, adds a document of about --entries tokens, then times Session-style single-key
queries (k=16) against the store.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    from conftest import SAMPLE_TEXT, make_gpt2_dir, make_lstm_dir

    from memviz.backends.registry import load_backend
    from memviz.memory.store import MemoryStore

    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--embd", type=int, default=768)
    ap.add_argument("--k", type=int, default=16)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    words = SAMPLE_TEXT.split()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = {
            f"gpt2 (n_embd={args.embd}, 2 layers, window 1024)": make_gpt2_dir(
                tmp / "g", layers=2, heads=12, embd=args.embd, positions=1024
            ),
            "lstm (hidden 512, 2 layers)": make_lstm_dir(tmp / "l", layers=2, hidden=512, embedding=64),
        }
        for label, folder in models.items():
            backend = load_backend(str(folder))
            text = ""
            while len(backend.encode(text).ids) < args.entries + 1:
                text += " ".join(rng.choice(words, 2000)) + "\n"
            ids = backend.encode(text).ids[: args.entries + 1]
            text = "".join(backend.token_text(i) for i in ids)
            store = MemoryStore.open(tmp / f"{folder.name}.sqlite", backend=backend, create=True)
            result = store.add_document(text, "bench", backend)
            backend.reset()
            keys = [backend.step(t).memory_key for t in ids[:200]]
            times = []
            for key in keys:
                t0 = time.perf_counter()
                store.search(key, args.k)
                times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            store.get(store.search(keys[-1], args.k)[0])
            get_ms = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            store.close()
            reopened = MemoryStore.open(tmp / f"{folder.name}.sqlite", backend=backend)
            open_ms = (time.perf_counter() - t0) * 1e3
            store.index_path.unlink()
            t0 = time.perf_counter()
            MemoryStore.open(tmp / f"{folder.name}.sqlite", backend=backend)
            rebuild_ms = (time.perf_counter() - t0) * 1e3
            size = store.path.stat().st_size / 2**20
            print(f"{label}: {result.entries} entries, key {reopened.key_dim} floats, db {size:.1f} MiB")
            print(f"  add: {result.rate:,.0f} entries/s ({result.seconds:.1f} s)")
            print(
                f"  search k={args.k}: median {np.median(times) * 1e3:.2f} ms, p95 {np.percentile(times, 95) * 1e3:.2f} ms"
            )
            print(
                f"  get {args.k} records: {get_ms:.2f} ms; open: {open_ms:.0f} ms; open with index rebuild: {rebuild_ms:.0f} ms"
            )


if __name__ == "__main__":
    main()
