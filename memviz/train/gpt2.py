"""Train a small GPT-2 (transformers' GPT2LMHeadModel) with a byte-level BPE tokenizer.

Saved in Hugging Face format, so it loads by exactly the code path the real GPT-2 uses.
"""

from __future__ import annotations

from pathlib import Path

import torch

from memviz.train.corpus import Sources, describe, load_corpus
from memviz.train.loop import TrainConfig, train_loop

EOT = "<|endoftext|>"


def train_tokenizer(text: str, vocab_size: int, out: Path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AutoTokenizer, GPT2TokenizerFast

    if (out / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(out)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [text[i : i + 100_000] for i in range(0, len(text), 100_000)],
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
    )
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token=EOT, eos_token=EOT, unk_token=EOT
    )
    tokenizer.model_max_length = 10**9  # the model's window, not the tokenizer, limits a run
    tokenizer.save_pretrained(out)
    return tokenizer


def train_gpt2(
    corpus_path: Sources,
    out: Path,
    cfg: TrainConfig,
    layers: int = 4,
    heads: int = 4,
    embd: int = 256,
    vocab_size: int = 4096,
    positions: int = 512,
    copy_fraction: float = 0.0,
    random_copy_fraction: float = 0.0,
) -> dict:
    """`copy_fraction` of each batch's sequences are a span of real text (8 to S/2 tokens) repeated: they
    reward copying from the context. `random_copy_fraction` of them are a span of uniformly random tokens
    repeated: nothing but copying predicts those, so the general circuit (a previous-token head feeding
    an induction head) is what they teach, within a CPU budget (Olsson et al. saw it form only after
    billions of tokens of plain text)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    corpus = load_corpus(corpus_path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(corpus.train, vocab_size, out)
    ids = torch.tensor(tokenizer(corpus.train)["input_ids"], dtype=torch.long)
    if (out / "model.safetensors").exists():
        model = GPT2LMHeadModel.from_pretrained(out, use_safetensors=True)
    else:
        config = GPT2Config(
            n_layer=layers,
            n_head=heads,
            n_embd=embd,
            vocab_size=len(tokenizer),
            n_positions=positions,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
        model = GPT2LMHeadModel(config)
    generator = torch.Generator().manual_seed(cfg.seed)
    B, S = cfg.batch_size, min(cfg.seq_len, model.config.n_positions)

    n_copy = round(B * copy_fraction)
    n_random = round(B * random_copy_fraction)
    if n_copy + n_random > B:
        raise ValueError("--copy-fraction plus --random-copy-fraction must be at most 1")
    vocab = model.config.vocab_size

    def batches(step: int):
        starts = torch.randint(0, len(ids) - S - 1, (B,), generator=generator)
        x = torch.stack([ids[s : s + S] for s in starts])
        for row in range(n_copy):  # a span of real text, tiled: every repeat is predictable by copying
            span = int(torch.randint(8, S // 2 + 1, (1,), generator=generator))
            x[row] = x[row, :span].repeat(S // span + 1)[:S]
        for row in range(n_copy, n_copy + n_random):  # random tokens (never <|endoftext|>), tiled
            span = int(torch.randint(8, S // 2 + 1, (1,), generator=generator))
            tokens = torch.randint(1, vocab, (span,), generator=generator)
            x[row] = tokens.repeat(S // span + 1)[:S]
        loss = model(input_ids=x, labels=x).loss
        return loss, x.numel()

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )

    def save_model():
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)

    result = train_loop(model, optimizer, batches, cfg, out, save_model, units="tok")
    result["parameters"] = sum(p.numel() for p in model.parameters())
    result["corpus"] = describe(corpus)
    result["train_tokens"] = len(ids)
    return result
