"""`memviz memory add|info`: fill a long-term memory store and describe it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memviz.errors import MemvizError, warn
from memviz.options import add_device_options, integer


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "memory", help="long-term memory stores: add documents, show what a store holds"
    )
    sub = p.add_subparsers(dest="memory_command", parser_class=type(p))
    p.set_defaults(func=lambda _args: (p.print_help(), 0)[1])

    add = sub.add_parser("add", help="read documents with a model and remember every token")
    add.add_argument("--store", help="store file (default: the model's store in the user data folder)")
    add.add_argument("--model", required=True, help="bundled model name, model folder, or Hugging Face id")
    add.add_argument(
        "--batch-size", type=integer(1, 100_000), default=512, help="entries per transaction (1 to 100000)"
    )
    add.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_options(add)
    add.add_argument("files", nargs="+", metavar="FILE")
    add.set_defaults(func=cmd_add)

    info = sub.add_parser("info", help="how many entries a store holds, and for which model")
    info.add_argument("--store", help="store file")
    info.add_argument("--model", help="with no --store: the model whose default store to describe")
    info.set_defaults(func=cmd_info)


def cmd_add(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from memviz.backends.registry import load_backend
    from memviz.memory.store import MemoryStore
    from memviz.textio import read_text_file

    if args.batch_size < 1:
        raise MemvizError(f"--batch-size must be at least 1, got {args.batch_size}")
    texts = []
    for name in args.files:  # read them all first: a bad file fails before any work
        text, warnings = read_text_file(name)
        for w in warnings:
            warn(w)
        texts.append((name, text))
    backend = load_backend(args.model, device=args.device, dtype=args.dtype)
    catching_up = CatchUpBar(quiet=args.quiet)
    try:
        store = MemoryStore.open(args.store, backend=backend, create=True, progress=catching_up)
    finally:
        catching_up.close()
    if store.index_rebuilt:
        warn(f"{store.path}: the key index was missing or out of date; rebuilt it from the database")
    total_added = 0
    try:
        for name, text in texts:
            bar = tqdm(
                desc=Path(name).name,
                unit=" entries",
                unit_scale=True,
                disable=args.quiet,
                file=sys.stderr,
                dynamic_ncols=True,
            )

            def progress(done: int, total: int, bar=bar) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                result = store.add_document(
                    text, Path(name).name, backend, progress=progress, batch_size=args.batch_size
                )
            finally:
                bar.close()
            total_added += result.entries
            print(f"{name}: {result.entries} entries in {result.seconds:.1f} s ({result.rate:.0f} entries/s)")
        # the store's own count: other processes may have added to it meanwhile
        print(f"{store.path}: {store.refresh()} entries ({total_added} new), model {store.model_name}")
    finally:
        store.close()
    return 0


class CatchUpBar:
    """progress(done, total) for an index catching up with its database on open (after an add was
    killed): a bar on stderr, made only if there is catching up to do."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                desc="catching up the key index",
                total=total,
                unit=" entries",
                unit_scale=True,
                disable=self.quiet,
                file=sys.stderr,
                dynamic_ncols=True,
            )
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_info(args: argparse.Namespace) -> int:
    from memviz.memory.store import MemoryStore, default_store_path

    if args.store:
        path = args.store
    elif args.model:
        path = default_store_path(Path(args.model).name if Path(args.model).exists() else args.model)
    else:
        raise MemvizError("give --store STORE (or --model M for its default store)")
    store = MemoryStore.open(path, backend=None, create=False)
    try:
        info = store.info()
        print(f"{info['entries']} entries")
        print(f"model: {info['model']} ({info['architecture']}, fingerprint {info['fingerprint']})")
        print(f"documents: {info['documents']}")
        print(f"keys: {info['key_dim']} values each, index {info['index']}")
        print(f"store: {info['store']}")
    finally:
        store.close()
    return 0
