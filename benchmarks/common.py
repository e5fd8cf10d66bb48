"""Helpers shared by the benchmarks: timing statistics, machine state, synthetic data."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time

import numpy as np


def ms_stats(seconds) -> dict:
    """p50 / p95 / mean / min in milliseconds of a list of durations in seconds."""
    a = np.asarray(seconds, dtype=np.float64) * 1e3
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "p50": round(float(np.percentile(a, 50)), 4),
        "p95": round(float(np.percentile(a, 95)), 4),
        "mean": round(float(a.mean()), 4),
        "min": round(float(a.min()), 4),
    }


def training_running() -> list[str]:
    """Command lines of `memviz train` processes (they distort every timing)."""
    if not shutil.which("pgrep"):
        return []
    out = subprocess.run(["pgrep", "-af", "memviz train"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def machine_state() -> dict:
    return {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "training_processes": len(training_running()),
    }


def machine_info() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_model(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    for name in ("transformers", "faiss", "PySide6", "pyqtgraph", "numpy"):
        try:
            module = __import__(name)
            info[name] = getattr(module, "__version__", "?")
        except ImportError:
            info[name] = None
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


class KeyDistribution:
    """Synthetic kNN-LM keys: clustered, low intrinsic dimension (like a model's hidden states).

    x = centre[c] + z @ U + noise, with 1024 centres (norm ~20), a shared 32-dimensional latent
    part (norm ~10) and isotropic noise (norm ~3). Keys of real language models are anisotropic and
    clustered; isotropic Gaussian keys (`isotropic=True`) are the worst case for graph indexes.
    """

    description = (
        "synthetic keys of dimension 768: 1024 cluster centres (norm ~20) + a shared 32-dimensional "
        "latent part (norm ~10) + isotropic noise (norm ~3); queries drawn from the same distribution"
    )

    def __init__(
        self, dim: int = 768, clusters: int = 1024, latent: int = 32, seed: int = 0, isotropic: bool = False
    ):
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.isotropic = isotropic
        self.centres = (rng.standard_normal((clusters, dim)) * (20 / np.sqrt(dim))).astype(np.float32)
        self.basis = (rng.standard_normal((latent, dim)) * (10 / np.sqrt(latent * dim))).astype(np.float32)
        self.noise = 3 / np.sqrt(dim)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.isotropic:
            return rng.standard_normal((n, self.dim), dtype=np.float32)
        c = rng.integers(0, len(self.centres), n)
        z = rng.standard_normal((n, self.basis.shape[0]), dtype=np.float32)
        x = self.centres[c] + z @ self.basis
        x += rng.standard_normal((n, self.dim), dtype=np.float32) * np.float32(self.noise)
        return x.astype(np.float32)


def wait_for_workers(app, window, since: float, limit_s: float = 60.0) -> float:
    """Seconds from `since` until the panels' background jobs are idle and delivered."""
    jobs = []
    for panel in window.panels.values():  # a panel's own jobs, its pools' (the recurrent panels)
        jobs += [getattr(panel, "jobs", None), getattr(getattr(panel, "pool_jobs", None), "jobs", None)]
    jobs = [j for j in jobs if j is not None]
    perf = time.perf_counter
    while perf() - since < limit_s:
        app.processEvents()
        if not any(j.running if hasattr(j, "running") else j.busy() for j in jobs):
            app.processEvents()
            return perf() - since
        time.sleep(0.005)
    return perf() - since
