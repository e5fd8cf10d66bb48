"""`memviz train lstm|gpt2` and `memviz eval`."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from memviz.options import SEED_MAX, integer, real
from memviz.train.corpus import DEFAULT_CORPUS


def register(sub) -> None:
    p = sub.add_parser("train", help="train a small model (how the bundled ones were made)")
    p.add_argument(
        "architecture",
        choices=["lstm", "gpt2", "rnn"],
        help="lstm: the character LSTM; gpt2; rnn: an LSTM or GRU, word- or character-level (--cell, --tokenizer)",
    )
    p.add_argument(
        "--corpus",
        action="extend",
        nargs="+",
        metavar="SOURCE",
        help="text, .gz, .info.gz or .html file, directory or quoted glob; several: each split alone "
        f"(repeatable; default {DEFAULT_CORPUS})",
    )
    p.add_argument("--out", required=True, help="model folder; resumes if it holds a checkpoint")
    p.add_argument(
        "--init-from",
        metavar="FOLDER",
        help="continue from this model's weights and vocabulary (fresh optimizer and schedule) "
        "when --out holds no model yet; --out's own model wins when it has one (a rerun resumes)",
    )
    p.add_argument(
        "--checkpoint-minutes",
        type=real(0.0, 10**6, low_open=True),
        default=5.0,
        help="save a resumable checkpoint at least this often (and every 200 steps)",
    )
    p.add_argument(
        "--minutes",
        type=real(0.0, 10**6, low_open=True),
        default=60.0,
        help="time budget (fixes the step count)",
    )
    p.add_argument(
        "--max-steps", type=integer(0, 10**9), default=0, help="exact step count (overrides --minutes)"
    )
    # Bounds far above a small model's and far below what would exhaust memory before training starts.
    p.add_argument("--layers", type=integer(1, 256))
    p.add_argument("--hidden", type=integer(1, 65536), help="LSTM units / GPT-2 embedding size")
    p.add_argument("--heads", type=integer(1, 1024), default=4)
    p.add_argument("--cell", choices=["gru", "lstm"], default="gru", help="rnn: the recurrent cell")
    p.add_argument(
        "--tokenizer", choices=["word", "char"], default="word", help="rnn: word- or character-level"
    )
    p.add_argument("--embedding", type=integer(1, 65536), help="rnn: embedding size (default 128)")
    p.add_argument(
        "--vocab-size",
        type=integer(2, 10**6),
        help="GPT-2 BPE vocabulary (default 4096, at least 257); rnn word vocabulary incl. <unk> (default 8000)",
    )
    p.add_argument("--context", type=integer(2, 65536), default=512, help="GPT-2 context window")
    p.add_argument(
        "--copy-fraction",
        type=real(0.0, 1.0),
        default=0.0,
        help="GPT-2: share of training sequences that repeat a span (teaches in-context copying)",
    )
    p.add_argument(
        "--random-copy-fraction",
        type=real(0.0, 1.0),
        default=0.0,
        help="GPT-2: share of training sequences that repeat random tokens (teaches induction heads)",
    )
    p.add_argument("--batch-size", type=integer(1, 65536))
    p.add_argument("--seq-len", type=integer(2, 65536))
    p.add_argument("--lr", type=real(0.0, 10.0, low_open=True))
    p.add_argument(
        "--constant-lr",
        action="store_true",
        help="hold the learning rate after warmup instead of the cosine decay",
    )
    p.add_argument("--threads", type=integer(0, 4096), default=0, help="0 = torch's default")
    p.add_argument("--seed", type=integer(0, SEED_MAX), default=0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="bits per character of a model on a text")
    p.add_argument("--model", required=True)
    p.add_argument("--text-file", required=True)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)"
    )
    p.set_defaults(func=cmd_eval)


def cmd_train(args: argparse.Namespace) -> int:
    from memviz.train.init_from import init_from
    from memviz.train.loop import TrainConfig

    out = Path(args.out)
    corpus = args.corpus or [DEFAULT_CORPUS]
    started_from = init_from(args.init_from, out, args.architecture) if args.init_from else None
    if args.architecture == "rnn":
        from memviz.train.rnn import train_rnn

        cfg = TrainConfig(
            max_steps=args.max_steps,
            minutes=args.minutes,
            lr=args.lr or 3e-3,
            batch_size=args.batch_size or 32,
            seq_len=args.seq_len or 64,
            seed=args.seed,
            threads=args.threads,
            constant_lr=args.constant_lr,
            checkpoint_minutes=args.checkpoint_minutes,
        )
        result = train_rnn(
            corpus,
            out,
            cfg,
            cell=args.cell,
            tokenizer_kind=args.tokenizer,
            layers=args.layers or 2,
            hidden=args.hidden or 384,
            embedding=args.embedding or 128,
            vocab_size=args.vocab_size or 8000,
        )
    elif args.architecture == "lstm":
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
            checkpoint_minutes=args.checkpoint_minutes,
        )
        result = train_lstm(corpus, out, cfg, hidden=args.hidden or 256, layers=args.layers or 2)
    else:
        from memviz.errors import MemvizError
        from memviz.train.gpt2 import train_gpt2

        if args.vocab_size is not None and args.vocab_size < 257:
            raise MemvizError(f"--vocab-size {args.vocab_size}: a byte-level BPE needs at least 257 tokens")

        cfg = TrainConfig(
            max_steps=args.max_steps,
            minutes=args.minutes,
            lr=args.lr or 2e-3,
            batch_size=args.batch_size or 16,
            seq_len=args.seq_len or 256,
            seed=args.seed,
            threads=args.threads,
            constant_lr=args.constant_lr,
            checkpoint_minutes=args.checkpoint_minutes,
        )
        result = train_gpt2(
            corpus,
            out,
            cfg,
            layers=args.layers or 4,
            heads=args.heads,
            embd=args.hidden or 256,
            vocab_size=args.vocab_size or 4096,
            positions=args.context,
            copy_fraction=args.copy_fraction,
            random_copy_fraction=args.random_copy_fraction,
        )
    if started_from is not None:
        result["init_from"] = started_from
    result["machine"] = f"{platform.processor() or platform.machine()}, {args.threads or 'default'} thread(s)"
    result["finished"] = time.strftime("%Y-%m-%d %H:%M")
    (out / "training.json").write_text(json.dumps(result, indent=2))
    print(
        f"saved {out}: {result['steps']} steps, {result['train_seconds'] / 60:.1f} min, loss {result['loss']:.3f}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from memviz.backends.gpt2 import GPT2Backend
    from memviz.backends.recurrent import RecurrentBackend
    from memviz.backends.registry import load_backend
    from memviz.errors import warn
    from memviz.textio import read_text_file
    from memviz.train.evaluate import NothingToPredict, bits_per_char, induction_losses, recurrent_score

    text, warnings = read_text_file(args.text_file)  # first: a bad file fails before the model loads
    for w in warnings:
        warn(w)
    backend = load_backend(args.model)
    start = time.perf_counter()
    # A bar only on a terminal: a log file or a pipe gets the result lines alone.
    on_terminal = bool(getattr(sys.stderr, "isatty", lambda: False)())
    bar = tqdm(
        desc="eval", unit=" tokens", unit_scale=True, disable=args.quiet or not on_terminal, file=sys.stderr
    )

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    score = None
    try:
        if isinstance(backend, RecurrentBackend):
            score = recurrent_score(backend, text, progress=progress)
            bpc = score.bits_per_char
        else:
            bpc = bits_per_char(backend, text, progress=progress)
    except NothingToPredict as exc:
        raise NothingToPredict(f"{args.text_file}: {exc}") from None
    finally:
        bar.close()
    result = {"model": backend.info.name, "characters": len(text), "bits_per_char": bpc}
    if score is not None and score.rule is not None:  # a word model: what the unknown words cost
        result["predicted_characters"] = score.characters
        result["predicted_tokens"] = score.tokens
        result["unknown_words"] = score.unknown
        result["spelling_bits_per_char"] = score.spelling_bits / max(1, score.characters)
        result["unknown_rule"] = score.rule
    if isinstance(backend, GPT2Backend):
        first, second = induction_losses(backend)
        result["induction_first_copy_loss"] = first
        result["induction_second_copy_loss"] = second
    result["seconds"] = time.perf_counter() - start
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['model']}: {result['bits_per_char']:.3f} bits per character on {len(text):,} characters")
    if "unknown_rule" in result:
        print(
            f"{result['unknown_words']:,} of {result['predicted_tokens']:,} words outside the vocabulary, "
            f"{result['spelling_bits_per_char']:.3f} bits per character of that for their spelling ({result['unknown_rule']})"
        )
    if "induction_first_copy_loss" in result:
        print(
            f"in-context copying: loss {result['induction_first_copy_loss']:.2f} nats/token on a random sequence, "
            f"{result['induction_second_copy_loss']:.2f} on its repeat"
        )
    return 0
