"""Train a word- or character-level LSTM/GRU language model and save it as a `memviz-rnn` folder.

The word vocabulary is the `vocab_size - 1` most frequent pieces of the training split under the word
tokenizer's rule (lower-cased, `DEFAULT_WORD_PATTERN`), after the unknown token `<unk>` (index 0).
Beside the weights the trainer writes `spelling.json`: the character statistics of the training
split's unknown words, which `memviz eval` uses to charge an unknown word for its spelling
(memviz.train.spelling).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from memviz.backends.recurrent import RecurrentModel, RNNConfig, load_recurrent, save_recurrent
from memviz.backends.tokenizers import DEFAULT_WORD_PATTERN, CharTokenizer, Tokenizer, WordTokenizer
from memviz.errors import MemvizError
from memviz.train.corpus import Sources, describe, load_corpus
from memviz.train.loop import TrainConfig, train_loop
from memviz.train.lstm import MIN_CHAR_COUNT
from memviz.train.spelling import SPELLING_FILE, SpellingModel

UNK_WORD = "<unk>"


def build_word_tokenizer(text: str, vocab_size: int) -> WordTokenizer:
    """`<unk>` and the `vocab_size - 1` most frequent words (ties: first seen first)."""
    rule = WordTokenizer([UNK_WORD], unk=0)  # the rule alone: pattern and lower-casing
    counts = Counter(rule.pieces(text))
    words = [w for w, _ in counts.most_common(vocab_size - 1) if w != UNK_WORD]
    return WordTokenizer([UNK_WORD, *words], unk=0, pattern=DEFAULT_WORD_PATTERN, lowercase=True)


def build_char_tokenizer(text: str) -> CharTokenizer:
    counts = Counter(text)
    chars = sorted(ch for ch, n in counts.items() if n >= MIN_CHAR_COUNT and ch != "\ufffd")
    return CharTokenizer(["\ufffd", *chars], unk=0)


def train_rnn(
    corpus_path: Sources,
    out: Path,
    cfg: TrainConfig,
    cell: str = "gru",
    tokenizer_kind: str = "word",
    layers: int = 2,
    hidden: int = 384,
    embedding: int = 128,
    vocab_size: int = 8000,
) -> dict:
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    corpus = load_corpus(corpus_path)
    out.mkdir(parents=True, exist_ok=True)
    model: nn.Module
    tokenizer: Tokenizer
    if (out / "config.json").exists():  # resuming: the saved architecture and vocabulary win
        model, tokenizer, config = load_recurrent(out)
        if not isinstance(model, RecurrentModel):
            raise MemvizError(f"{out}: holds a memviz-lstm model; train it with `memviz train lstm`")
        if (config.cell, config.tokenizer) != (cell, tokenizer_kind):
            raise MemvizError(
                f"{out}: holds a {config.tokenizer}-level {config.cell.upper()}, not a "
                f"{tokenizer_kind}-level {cell.upper()}: use another --out"
            )
    else:
        if tokenizer_kind == "word":
            tokenizer = build_word_tokenizer(corpus.train, vocab_size)
        else:
            tokenizer = build_char_tokenizer(corpus.train)
        config = RNNConfig(
            cell=cell,
            vocab_size=len(tokenizer.tokens),
            embedding_dim=embedding,
            layer_sizes=(hidden,) * layers,
            tokenizer=tokenizer_kind,
        )
        model = RecurrentModel(config)
    if isinstance(tokenizer, WordTokenizer) and not (out / SPELLING_FILE).exists():
        SpellingModel.from_unknown_words(tokenizer, corpus.train).save(out / SPELLING_FILE)
    data = torch.tensor(tokenizer.encode(corpus.train).ids, dtype=torch.long)
    B, S = cfg.batch_size, cfg.seq_len
    stream_len = len(data) // B
    if stream_len < S + 2:
        raise MemvizError(
            f"{corpus.source}: {len(data):,} training tokens are too few for {B} streams of {S} tokens"
        )
    # B parallel streams through the corpus; the state carries across steps (truncated BPTT).
    streams = data[: stream_len * B].view(B, stream_len)
    chunks = (stream_len - 1) // S
    state: dict = {"s": None}
    loss_fn = nn.CrossEntropyLoss()

    def batches(step: int):
        chunk = step % chunks
        if chunk == 0:
            state["s"] = None
        x = streams[:, chunk * S : chunk * S + S]
        y = streams[:, chunk * S + 1 : chunk * S + S + 1]
        logits, s = model(x, state["s"])
        state["s"] = [t.detach() if torch.is_tensor(t) else tuple(u.detach() for u in t) for t in s]
        return loss_fn(logits.reshape(-1, logits.size(-1)), y.reshape(-1)), x.numel()

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    units = "word" if tokenizer_kind == "word" else "char"
    result = train_loop(
        model, optimizer, batches, cfg, out, lambda: save_recurrent(model, tokenizer, out), units=units
    )
    result["parameters"] = sum(p.numel() for p in model.parameters())
    result["corpus"] = describe(corpus)
    result["training_tokens"] = len(data)
    (out / "training_args.json").write_text(
        json.dumps(
            {"cell": cell, "tokenizer": tokenizer_kind, "layers": len(config.layer_sizes)}
            | {"hidden": list(config.layer_sizes), "embedding": config.embedding_dim}
            | {"vocab_size": config.vocab_size, "batch_size": B, "seq_len": S, "lr": cfg.lr},
            indent=2,
        )
    )
    return result
