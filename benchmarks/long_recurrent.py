"""A long recurrent run written to disk as it goes (issue 16, "trace format 2", items 1 and 3).

    OMP_NUM_THREADS=1 python benchmarks/long_recurrent.py                 # T = 12,000 and 60,000
    OMP_NUM_THREADS=1 python benchmarks/long_recurrent.py --tokens 3000   # a quicker look

The bundled character LSTM (2 layers of 256 units: gates, cell and hidden state are 12.5 KB a
step) reads T characters of the project's own Python source through the Session, as `memviz
trace` does. Each T runs in its own process, so its RSS is its own. Printed per T:

- steps/s of the whole run, and the part of each step spent in `Trace.append` (the columns and
  the token line written to the run's folder);
- `Trace.nbytes` (what the trace holds in RAM) and its folder on disk (`Trace.spool_nbytes`);
- RSS (VmRSS) and RssAnon (RAM that is not page cache) after the model loaded and after the run,
  and RssAnon's growth per step; the Session's kNN keys (an array a step, kept for `memviz memory
  remember`) are part of it, and printed on their own;
- `Trace.recover` of the run's folder and `save` of what it gives (what `memviz recover` does).

`--drop-knn-keys` empties the Session's kNN keys every 1,000 steps: RssAnon's growth is then what
the run costs without them (the trace's token lists, and what the allocator does not give back).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _text(n: int) -> str:
    source = "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "memviz").rglob("*.py")))
    return (source * (n // len(source) + 1))[:n]


def one(tokens: int, out: Path, drop_keys: bool = False) -> dict:
    """Run in a child process: one run of `tokens` steps."""
    import gc
    import tempfile

    from memviz.backends.registry import load_backend
    from memviz.core.session import Session
    from memviz.core.trace import Trace

    text = _text(tokens)
    session = Session(load_backend("python-docs-lstm"))
    session.feed(text[:8])
    session.run()  # warm: first calls allocate
    session.reset()
    gc.collect()
    rss0, anon0 = _status("VmRSS"), _status("RssAnon")
    trace_append = Trace.append
    spent = [0.0]

    def timed(self, record):
        t0 = time.perf_counter()
        try:
            return trace_append(self, record)
        finally:
            spent[0] += time.perf_counter() - t0

    Trace.append = timed
    session.feed(text)

    def progress(n: int) -> None:
        if drop_keys and n % 1000 == 0:
            session.keys.clear()

    t0 = time.perf_counter()
    steps = session.run(progress=progress)
    elapsed = time.perf_counter() - t0
    Trace.append = trace_append
    gc.collect()
    trace = session.trace
    rss1, anon1 = _status("VmRSS"), _status("RssAnon")
    keys = sum(k.nbytes + 112 for k in session.keys)  # 112: a small numpy array's own header
    t1 = time.perf_counter()
    recovered = Trace.recover(trace.spool_folder)
    recover_s = time.perf_counter() - t1
    with tempfile.TemporaryDirectory() as folder:
        t2 = time.perf_counter()
        saved = recovered.save(Path(folder) / "run.memviz")
        save_s = time.perf_counter() - t2
        file_mb = saved.stat().st_size / 2**20
    result = {
        "tokens": steps,
        "steps_per_s": round(steps / elapsed, 1),
        "append_us_per_step": round(spent[0] / steps * 1e6, 1),
        "append_share": round(spent[0] / elapsed, 3),
        "trace_nbytes_kb": round(trace.nbytes / 1024, 1),
        "columns_mb_if_in_ram": round(sum(trace.array(k).nbytes for k in trace.column_names) / 2**20, 1),
        "disk_mb": round(trace.spool_nbytes / 2**20, 1),
        "rss_mb_before": round(rss0 / 2**20, 1),
        "rss_mb_after": round(rss1 / 2**20, 1),
        "rss_anon_mb_before": round(anon0 / 2**20, 1),
        "rss_anon_mb_after": round(anon1 / 2**20, 1),
        "rss_anon_bytes_per_step": round((anon1 - anon0) / steps, 1),
        "session_knn_keys_mb": round(keys / 2**20, 1),
        "knn_keys_dropped": drop_keys,
        "recover_s": round(recover_s, 2),
        "save_s": round(save_s, 2),
        "saved_file_mb": round(file_mb, 1),
    }
    out.write_text(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="12000,60000", help="comma-separated T")
    parser.add_argument("--drop-knn-keys", action="store_true", help="empty Session.keys every 1,000 steps")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        one(args.child, args.out, args.drop_knn_keys)
        return
    from common import machine_state

    print(json.dumps({"machine": machine_state(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}))
    for n in (int(x) for x in args.tokens.split(",")):
        out = Path(f"/tmp/long_recurrent_{os.getpid()}_{n}.json")
        subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--out", str(out)]
            + (["--drop-knn-keys"] if args.drop_knn_keys else []),
            check=True,
            cwd=Path(__file__).parent,
        )
        print(json.dumps(json.loads(out.read_text())), flush=True)
        out.unlink()


if __name__ == "__main__":
    main()
