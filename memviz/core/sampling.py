"""Choosing the next token: greedy at temperature 0, else temperature, top-k and top-p, seeded."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from memviz.errors import MemvizError


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0
    top_k: int = 0  # 0: no limit
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not np.isfinite(self.temperature) or self.temperature < 0:
            raise MemvizError(f"temperature must be 0 or more, got {self.temperature}")
        if self.top_k < 0:
            raise MemvizError(f"top-k must be 0 (off) or more, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise MemvizError(f"top-p must be in (0, 1], got {self.top_p}")

    @property
    def strategy(self) -> str:
        return "greedy" if self.temperature == 0 else "sample"

    def as_manifest(self) -> dict:
        return {"strategy": self.strategy, **asdict(self)}


class Sampler:
    """Draws tokens from a probability vector; the same seed gives the same run."""

    def __init__(self, config: SamplingConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)

    def filtered(self, probs: np.ndarray) -> np.ndarray:
        """The distribution actually sampled from, after temperature, top-k and top-p."""
        cfg = self.config
        p = np.asarray(probs, dtype=np.float64)
        if cfg.temperature == 0:
            out = np.zeros_like(p)
            out[int(np.argmax(p))] = 1.0
            return out
        if cfg.temperature != 1:
            with np.errstate(divide="ignore"):
                logp = np.log(p) / cfg.temperature
            logp -= logp.max()
            p = np.exp(logp)
            p /= p.sum()
        if 0 < cfg.top_k < len(p):
            keep = np.zeros_like(p, dtype=bool)
            keep[np.argsort(-p, kind="stable")[: cfg.top_k]] = True  # exactly k, ties to the lower id
            p = np.where(keep, p, 0.0)
            p /= p.sum()
        if cfg.top_p < 1:
            order = np.argsort(-p, kind="stable")
            cumulative = np.cumsum(p[order])
            keep = int(np.searchsorted(cumulative, cfg.top_p)) + 1  # smallest set reaching top_p
            mask = np.zeros_like(p, dtype=bool)
            mask[order[:keep]] = True
            p = np.where(mask, p, 0.0)
            p /= p.sum()
        return p

    def sample(self, probs: np.ndarray) -> int:
        return self.draw(self.filtered(probs))

    def draw(self, p: np.ndarray) -> int:
        """A token drawn from `p`, a distribution `filtered` made (the one a trace records)."""
        if self.config.temperature == 0:
            return int(np.argmax(p))
        cumulative = np.cumsum(p)
        index = int(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right"))
        return min(index, len(p) - 1)


def kept_top_k(filtered: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most probable tokens of a sampling distribution; places beyond the tokens it kept (after
    top-k and top-p, probability 0) are id -1, probability 0."""
    ids, probs = top_k_of(filtered, k)
    ids[probs <= 0] = -1
    probs[probs <= 0] = 0.0
    return ids, probs


def top_k_of(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most probable tokens, best first (ties broken by lower id)."""
    k = min(k, len(probs))
    part = np.argpartition(-probs, k - 1)[:k]
    order = np.lexsort((part, -probs[part]))
    ids = part[order]
    return ids.astype(np.int64), probs[ids].astype(np.float32)
