"""What both trainers share: the step budget, LR schedule, progress line, checkpoints and Ctrl-C."""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

STATE_FILE = "train_state.pt"  # model + optimizer tensors, loaded with weights_only=True


@dataclass
class TrainConfig:
    max_steps: int = 0  # 0: fixed from the time budget after measuring the first steps
    minutes: float = 60.0
    lr: float = 2e-3
    warmup: int = 100
    constant_lr: bool = (
        False  # after warmup: hold lr (a phase that must keep learning) instead of cosine decay
    )
    batch_size: int = 32
    seq_len: int = 128
    checkpoint_every: int = 200
    checkpoint_minutes: float = 5.0  # and at least this often: a session that ends loses little
    seed: int = 0
    threads: int = 0  # 0: torch's default
    extra: dict = field(default_factory=dict)


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.constant_lr:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class Interrupt:
    """Turns the first Ctrl-C into a flag, so the loop can save before it stops."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = signal.signal(signal.SIGINT, self._handle)
        self._previous_term = signal.signal(signal.SIGTERM, self._handle)

    def restore(self) -> None:
        signal.signal(signal.SIGINT, self._previous)
        signal.signal(signal.SIGTERM, self._previous_term)

    def _handle(self, *_):
        if self.requested:  # a second Ctrl-C: stop now
            signal.signal(signal.SIGINT, self._previous)
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping: saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)


def save_state(out: Path, model: torch.nn.Module, optimizer, step: int, cfg: TrainConfig, log: dict) -> None:
    tmp = out / (STATE_FILE + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp)
    tmp.replace(out / STATE_FILE)
    meta = {"step": step, "max_steps": cfg.max_steps, **log}
    (out / "train_state.json").write_text(json.dumps(meta, indent=2))


def load_state(out: Path, model: torch.nn.Module, optimizer) -> dict | None:
    if not (out / STATE_FILE).exists() or not (out / "train_state.json").exists():
        return None
    state = torch.load(out / STATE_FILE, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return json.loads((out / "train_state.json").read_text())


def train_loop(
    model, optimizer, batches, cfg: TrainConfig, out: Path, save_model, units: str = "tok"
) -> dict:
    """Run steps of `loss = batches(step)` until the budget; checkpoint, resume, Ctrl-C save.

    `batches(step)` returns (loss, tokens_in_batch). `save_model()` writes the loadable checkpoint.
    """
    out.mkdir(parents=True, exist_ok=True)
    resumed = load_state(out, model, optimizer)
    step = resumed["step"] if resumed else 0
    elapsed_before = resumed.get("train_seconds", 0.0) if resumed else 0.0
    if resumed:
        cfg.max_steps = max(cfg.max_steps, resumed["max_steps"])  # --max-steps can extend a finished run
        print(f"resuming at step {step} of {cfg.max_steps}", file=sys.stderr)
    interrupt = Interrupt()
    bar = tqdm(total=cfg.max_steps or None, initial=step, unit="step", dynamic_ncols=True, file=sys.stderr)
    start = time.perf_counter()
    last_save = start
    tokens_seen = 0
    smoothed = None
    model.train()
    while cfg.max_steps == 0 or step < cfg.max_steps:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss, n_tokens = batches(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        tokens_seen += n_tokens
        smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
        seconds = time.perf_counter() - start
        if cfg.max_steps == 0 and step == 30:  # fix the step budget from measured speed
            cfg.max_steps = max(100, int(cfg.minutes * 60 / (seconds / step)))
            bar.total = cfg.max_steps
            bar.write(f"step budget: {cfg.max_steps} steps in about {cfg.minutes:g} minutes", file=sys.stderr)
        bar.update(1)
        bar.set_postfix_str(
            f"loss {smoothed:.3f}  {tokens_seen / seconds:,.0f} {units}/s  lr {lr_at(step, cfg):.2e}",
            refresh=False,
        )
        log = {"loss": smoothed, "train_seconds": elapsed_before + seconds}
        due = time.perf_counter() - last_save >= cfg.checkpoint_minutes * 60
        if due or step % cfg.checkpoint_every == 0 or interrupt.requested or step == cfg.max_steps:
            model.eval()
            save_model()
            model.train()
            save_state(out, model, optimizer, step, cfg, log)
            last_save = time.perf_counter()
        if interrupt.requested:
            break
    bar.close()
    interrupt.restore()
    model.eval()
    return {"steps": step, "train_seconds": elapsed_before + time.perf_counter() - start, "loss": smoothed}
