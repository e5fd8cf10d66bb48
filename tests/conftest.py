"""Shared fixtures: real, small models built inside the tests (nothing is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SAMPLE_TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n" * 4


def make_lstm_dir(
    folder: Path, layers: int = 3, hidden: int = 32, embedding: int = 16, seed: int = 0
) -> Path:
    import torch

    from memviz.backends.lstm import CharTokenizer, LSTMLanguageModel, save_lstm_checkpoint

    torch.manual_seed(seed)
    tokenizer = CharTokenizer.from_text(SAMPLE_TEXT)
    model = LSTMLanguageModel(len(tokenizer.tokens), embedding, hidden, layers)
    save_lstm_checkpoint(model, tokenizer, folder)
    return folder


def make_gpt2_dir(
    folder: Path, layers: int = 3, heads: int = 4, embd: int = 32, positions: int = 128, seed: int = 0
) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    torch.manual_seed(seed)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [SAMPLE_TEXT] * 5, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"]
    )
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    config = GPT2Config(
        n_layer=layers,
        n_head=heads,
        n_embd=embd,
        vocab_size=len(tokenizer),
        n_positions=positions,
        bos_token_id=0,
        eos_token_id=0,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def lstm_dir(tmp_path_factory) -> Path:
    return make_lstm_dir(tmp_path_factory.mktemp("lstm") / "tiny-lstm")


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory) -> Path:
    return make_gpt2_dir(tmp_path_factory.mktemp("gpt2") / "tiny-gpt2")
