"""`memviz train lstm|gpt2` and `memviz eval`."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from memviz.train.corpus import DEFAULT_CORPUS


def register(sub) -> None:
    p = sub.add_parser("train", help="train a small model (how the bundled ones were made)")
    p.add_argument("architecture", choices=["lstm", "gpt2"])
    p.add_argument("--corpus", default=DEFAULT_CORPUS, help=f"text or .gz file (default {DEFAULT_CORPUS})")
    p.add_argument("--out", required=True, help="model folder; resumes if it holds a checkpoint")
    p.add_argument("--minutes", type=float, default=60.0, help="time budget (fixes the step count)")
    p.add_argument("--max-steps", type=int, default=0, help="exact step count (overrides --minutes)")
    p.add_argument("--layers", type=int)
    p.add_argument("--hidden", type=int, help="LSTM units / GPT-2 embedding size")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab-size", type=int, default=4096, help="GPT-2 BPE vocabulary")
    p.add_argument("--context", type=int, default=512, help="GPT-2 context window")
    p.add_argument(
        "--copy-fraction",
        type=float,
        default=0.0,
        help="GPT-2: share of training sequences that repeat a span (teaches in-context copying)",
    )
    p.add_argument(
        "--random-copy-fraction",
        type=float,
        default=0.0,
        help="GPT-2: share of training sequences that repeat random tokens (teaches induction heads)",
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument(
        "--constant-lr",
        action="store_true",
        help="hold the learning rate after warmup instead of the cosine decay",
    )
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="bits per character of a model on a text")
    p.add_argument("--model", required=True)
    p.add_argument("--text-file", required=True)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_eval)


def cmd_train(args: argparse.Namespace) -> int:
    from memviz.train.loop import TrainConfig

    out = Path(args.out)
    if args.architecture == "lstm":
        from memviz.train.lstm import train_lstm

        cfg = TrainConfig(
            max_steps=args.max_steps,
            minutes=args.minutes,
            lr=args.lr or 3e-3,
            batch_size=args.batch_size or 64,
            seq_len=args.seq_len or 128,
            seed=args.seed,
            threads=args.threads,
            constant_lr=args.constant_lr,
        )
        result = train_lstm(args.corpus, out, cfg, hidden=args.hidden or 256, layers=args.layers or 2)
    else:
        from memviz.train.gpt2 import train_gpt2

        cfg = TrainConfig(
            max_steps=args.max_steps,
            minutes=args.minutes,
            lr=args.lr or 2e-3,
            batch_size=args.batch_size or 16,
            seq_len=args.seq_len or 256,
            seed=args.seed,
            threads=args.threads,
            constant_lr=args.constant_lr,
        )
        result = train_gpt2(
            args.corpus,
            out,
            cfg,
            layers=args.layers or 4,
            heads=args.heads,
            embd=args.hidden or 256,
            vocab_size=args.vocab_size,
            positions=args.context,
            copy_fraction=args.copy_fraction,
            random_copy_fraction=args.random_copy_fraction,
        )
    result["machine"] = f"{platform.processor() or platform.machine()}, {args.threads or 'default'} thread(s)"
    result["finished"] = time.strftime("%Y-%m-%d %H:%M")
    (out / "training.json").write_text(json.dumps(result, indent=2))
    print(
        f"saved {out}: {result['steps']} steps, {result['train_seconds'] / 60:.1f} min, loss {result['loss']:.3f}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from memviz.backends.gpt2 import GPT2Backend
    from memviz.backends.registry import load_backend
    from memviz.textio import read_text_file
    from memviz.train.evaluate import bits_per_char, induction_losses

    backend = load_backend(args.model)
    text, _ = read_text_file(args.text_file)
    start = time.perf_counter()
    result = {
        "model": backend.info.name,
        "characters": len(text),
        "bits_per_char": bits_per_char(backend, text),
    }
    if isinstance(backend, GPT2Backend):
        first, second = induction_losses(backend)
        result["induction_first_copy_loss"] = first
        result["induction_second_copy_loss"] = second
    result["seconds"] = time.perf_counter() - start
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['model']}: {result['bits_per_char']:.3f} bits per character on {len(text):,} characters")
    if "induction_first_copy_loss" in result:
        print(
            f"in-context copying: loss {result['induction_first_copy_loss']:.2f} nats/token on a random sequence, "
            f"{result['induction_second_copy_loss']:.2f} on its repeat"
        )
    return 0
