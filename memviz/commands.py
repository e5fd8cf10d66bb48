"""What the model commands share: the options that make a trace, and making it (trace, export, gui).

`add_device_options` lives in memviz.options (the memory and train commands, below core, use it too)
and is imported here for the commands that always took it from here.
"""

from __future__ import annotations

import argparse

from memviz.errors import MemvizError, warn
from memviz.options import (
    MAX_GENERATE,
    MAX_KNN_K,
    SEED_MAX,
    add_device_options,
    integer,
    real,
    temperature,
)


def add_trace_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The options that make a trace: shared by `trace`, `export` and `gui`."""
    p.add_argument("--model", required=required, help="bundled model name, model folder, or Hugging Face id")
    p.add_argument(
        "--vocab",
        metavar="FILE",
        help="a Keras model's vocabulary: a Keras Tokenizer JSON or a plain list (one token a line)",
    )
    text = p.add_mutually_exclusive_group()
    text.add_argument("--text", help="text to read")
    text.add_argument("--text-file", help="file of text to read (UTF-8)")
    p.add_argument(
        "--generate",
        type=integer(0, MAX_GENERATE),
        default=0,
        metavar="N",
        help=f"tokens to generate after the text (at most {MAX_GENERATE})",
    )
    p.add_argument("--seed", type=integer(0, SEED_MAX), default=0, help=f"0 to {SEED_MAX}")
    p.add_argument("--temperature", type=temperature, default=1.0, help="0 = greedy; up to 1000")
    p.add_argument("--top-k", type=integer(0, 1_000_000), default=0, help="0 = off")
    p.add_argument("--top-p", type=real(0.0, 1.0, low_open=True), default=1.0, help="in (0, 1]")
    p.add_argument("--memory", metavar="STORE", help="long-term memory store to recall from")
    p.add_argument("--knn-lambda", type=real(0.0, 1.0), default=0.25, help="0 to 1")
    p.add_argument(
        "--knn-k",
        type=integer(1, MAX_KNN_K),
        default=16,
        help=f"memories recalled per step, 1 to {MAX_KNN_K} (at most the store's size)",
    )
    p.add_argument("--knn-temperature", type=real(0.0, 1e6, low_open=True), default=1.0)
    p.add_argument(
        "--intervene",
        action="append",
        default=[],
        metavar="SPEC",
        help="change the model during the run (repeatable): head:L.H=zero, cell:L.U=V, hidden:L.U=V, "
        "reset:S, context:W, mask:A-B (layers, heads, units and steps from 0)",
    )
    p.add_argument(
        "--logit-lens",
        action="store_true",
        help="also record, per step and layer, the final norm + unembedding of the residual stream",
    )
    add_device_options(p)


def text_from_args(args: argparse.Namespace) -> str:
    from memviz.textio import read_text_file

    if args.text_file is not None:
        text, warnings = read_text_file(args.text_file)
        for w in warnings:
            warn(w)
        return text
    if args.text is None:
        raise MemvizError("give --text or --text-file")
    return args.text


def build_session(args: argparse.Namespace):
    """Load the model (and memory) that the options name, ready to read."""
    from memviz.backends.registry import load_backend
    from memviz.core.interventions import parse_all
    from memviz.core.sampling import SamplingConfig
    from memviz.core.session import RecallSettings, Session

    sampling = SamplingConfig(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed
    )
    recall = RecallSettings(k=args.knn_k, lam=args.knn_lambda, temperature=args.knn_temperature)
    interventions = parse_all(getattr(args, "intervene", None))  # syntax: before the model loads
    backend = load_backend(
        args.model,
        device=getattr(args, "device", None),
        dtype=getattr(args, "dtype", None),
        vocab=getattr(args, "vocab", None),
    )
    memory = None
    if getattr(args, "memory", None):
        from memviz.memory.store import MemoryStore

        memory = MemoryStore.open(args.memory, backend=backend, create=False)
        if 0 < len(memory) < recall.k:  # more neighbours than memories: only padding, k wide per step
            warn(f"--knn-k {recall.k}: {args.memory} holds {len(memory)} entries; recalling {len(memory)}")
            recall = RecallSettings(k=len(memory), lam=recall.lam, temperature=recall.temperature)
    return Session(
        backend,
        sampling=sampling,
        memory=memory,
        recall=recall,
        interventions=interventions,
        logit_lens=bool(getattr(args, "logit_lens", False)),
        dense_attention=bool(getattr(args, "dense_attention", False)),
        slide=getattr(args, "slide", None),
    )


def make_trace(args: argparse.Namespace):
    text = text_from_args(args)
    if args.generate < 0:
        raise MemvizError(f"--generate must be 0 or more, got {args.generate}")
    session = build_session(args)
    for w in session.feed(text):
        warn(w)
    session.generate(args.generate)
    session.run()
    if session.stop_reason:
        warn(session.stop_reason)
    return session.trace
