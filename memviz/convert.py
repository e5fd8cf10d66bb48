"""`memviz convert MODEL --out FOLDER`: any recurrent model memviz reads, written as a memviz-rnn folder.

MODEL is a Keras `.keras` / `.h5` file (with `--vocab FILE` where it carries no vocabulary) or a
memviz-lstm / memviz-rnn folder. The folder holds config.json, vocab.json (or tokenizer.json) and
model.safetensors, and loads with `--model FOLDER` without Keras or h5py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from memviz.errors import MemvizError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="write a Keras or memviz recurrent model as a memviz folder (safetensors)"
    )
    p.add_argument("model", metavar="MODEL", help="a .keras / .h5 file, or a memviz-lstm / memviz-rnn folder")
    p.add_argument("--out", required=True, metavar="FOLDER", help="the folder to write (new or empty)")
    p.add_argument("--vocab", metavar="FILE", help="the vocabulary of a Keras model that carries none")
    p.add_argument("--labels", metavar="A,B,...", help="a classifier's label names, comma-separated")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    out = Path(args.out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MemvizError(f"--out {out}: exists and is not an empty folder")
    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    backend = convert(Path(args.model).expanduser(), out, vocab=args.vocab, labels=labels)
    info = backend.info
    sizes = "x".join(str(s) for s in backend.layer_sizes)
    print(
        f"wrote {out}: {info.architecture} {sizes}, {info.vocab_size} tokens ({backend.tokenizer.kind}), head {backend.head}"
    )
    return 0


def convert(model: Path, out: Path, vocab: str | None = None, labels: list[str] | None = None):
    """Load MODEL, write it to `out`, load the result back (so a written folder is known to load)."""
    from memviz.backends.recurrent import RecurrentBackend, load_recurrent, save_recurrent

    if model.is_file():
        from memviz.backends.keras_import import load_keras

        net, tokenizer, head, found_labels = load_keras(model, vocab=vocab, labels=labels)
    elif model.is_dir():
        if vocab is not None:
            raise MemvizError("--vocab is for Keras files; a memviz folder has its own vocabulary")
        net, tokenizer, config = load_recurrent(model)
        head, found_labels = config.head, config.labels
        if labels is not None:
            if head != "classifier" or len(labels) != len(found_labels):
                raise MemvizError(f"--labels: {model} has {len(found_labels)} labels ({head} head)")
            found_labels = tuple(labels)
    else:
        raise MemvizError(f"{model}: no such file or folder")
    save_recurrent(net, tokenizer, out, head=head, labels=list(found_labels))
    return RecurrentBackend.from_folder(out)
