"""Train a character LSTM on a corpus and save it in memviz's LSTM checkpoint format."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from memviz.backends.lstm import CharTokenizer, LSTMLanguageModel, load_lstm, save_lstm_checkpoint
from memviz.train.corpus import Sources, describe, load_corpus
from memviz.train.loop import TrainConfig, train_loop

MIN_CHAR_COUNT = 20  # rarer characters are read as the unknown token


def build_tokenizer(text: str, out: Path) -> CharTokenizer:
    if (out / "vocab.json").exists():  # resuming: keep the vocabulary the weights were trained with
        data = json.loads((out / "vocab.json").read_text())
        return CharTokenizer(data["tokens"], data["unk"])
    counts = Counter(text)
    chars = sorted(ch for ch, n in counts.items() if n >= MIN_CHAR_COUNT and ch != "\ufffd")
    return CharTokenizer(["\ufffd", *chars], unk=0)


def train_lstm(
    corpus_path: Sources, out: Path, cfg: TrainConfig, hidden: int = 256, layers: int = 2, embedding: int = 64
) -> dict:
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    corpus = load_corpus(corpus_path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(corpus.train, out)
    if (out / "config.json").exists():
        model, _, _ = load_lstm(out)
    else:
        model = LSTMLanguageModel(len(tokenizer.tokens), embedding, hidden, layers)
    data = torch.tensor(tokenizer.encode(corpus.train).ids, dtype=torch.long)
    # B parallel streams through the corpus; the state carries across steps (truncated BPTT).
    B, S = cfg.batch_size, cfg.seq_len
    stream_len = len(data) // B
    streams = data[: stream_len * B].view(B, stream_len)
    chunks = (stream_len - 1) // S
    state = {"hc": None}
    loss_fn = nn.CrossEntropyLoss()

    def batches(step: int):
        chunk = step % chunks
        if chunk == 0:
            state["hc"] = None
        x = streams[:, chunk * S : chunk * S + S]
        y = streams[:, chunk * S + 1 : chunk * S + S + 1]
        logits, hc = model(x, state["hc"])
        state["hc"] = tuple(t.detach() for t in hc)
        return loss_fn(logits.reshape(-1, logits.size(-1)), y.reshape(-1)), x.numel()

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    result = train_loop(
        model, optimizer, batches, cfg, out, lambda: save_lstm_checkpoint(model, tokenizer, out), units="char"
    )
    result["parameters"] = sum(p.numel() for p in model.parameters())
    result["corpus"] = describe(corpus)
    return result
