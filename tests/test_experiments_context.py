"""`memviz experiment context` against hand-written loops, and at full W against `memviz eval`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from memviz.backends.registry import load_backend
from memviz.cli import build_parser
from memviz.experiments import context
from memviz.train.evaluate import bits_per_char


def context_args(text: str, *options: str):
    args = build_parser().parse_args(
        ["experiment", "context", "--model", "m", "--out", "o", "--text-file", "t", *options]
    )
    args.text = text
    return args


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return load_backend(str(gpt2_dir))


@pytest.fixture(scope="module")
def lstm(lstm_dir):
    return load_backend(str(lstm_dir))


def next_logp(backend, ids: list[int]) -> float:
    """log p of the token after `ids`, read from the model's own forward pass over them alone."""
    x = torch.tensor([ids[:-1]])
    with torch.no_grad():
        logits = (
            backend.model(input_ids=x).logits[0, -1]
            if backend.info.kind == "transformer"
            else backend.model(x)[0][0, -1]
        )
    return -F.cross_entropy(logits[None], torch.tensor([ids[-1]])).item()


def hand_bits_per_char(backend, text: str, window: int) -> float:
    ids = list(backend.encode(text).ids)
    characters = (
        len(ids) - 1
        if backend.info.kind != "transformer"
        else len(text) - len(backend.tokenizer.decode(ids[:1]))
    )
    bits = 0.0
    for t in range(len(ids) - 1):  # predicting token t + 1 from tokens t - W + 1 .. t
        bits -= next_logp(backend, ids[max(0, t - window + 1) : t + 2]) / math.log(2)
    return bits / characters


@pytest.mark.parametrize("which", ["gpt2", "lstm"])
def test_full_context_equals_memviz_eval_and_truncation_a_loop(request, which, sample_text):
    backend = request.getfixturevalue(which)
    text = sample_text[:150]
    result = context.run([backend], context_args(text, "--windows", "1,3,10,1000", "--no-shuffle"))
    rows = {r["window"]: r for r in result.rows}
    entry = result.models[0]
    n = entry["tokens"]
    assert sorted(rows) == [1, 3, 10]  # 1000 is more than the text holds
    full = entry["full_bits_per_char"]
    assert full == pytest.approx(bits_per_char(backend, text), abs=1e-5)  # memviz eval's figure
    assert entry["eval_bits_per_char"] == pytest.approx(full, abs=1e-5)
    for w in (1, 3):
        assert rows[w]["bits_per_char"] == pytest.approx(hand_bits_per_char(backend, text, w), abs=1e-4)
        assert rows[w]["bpc_increase"] == pytest.approx(rows[w]["bits_per_char"] - full, abs=1e-9)
    whole = context.run([backend], context_args(text, "--windows", str(n - 1), "--no-shuffle")).rows[0]
    assert whole["bits_per_char"] == pytest.approx(full, abs=1e-6)
    assert whole["bpc_increase"] == pytest.approx(0.0, abs=1e-6)


def test_the_text_is_cut_to_the_window(gpt2, lstm, sample_text):
    long_text = sample_text * 8
    result = context.run([gpt2], context_args(long_text, "--windows", "4", "--no-shuffle"))
    entry = result.models[0]
    assert entry["tokens"] <= 128 < len(gpt2.encode(long_text).ids)
    kept = long_text[: entry["text_characters"]]
    assert len(gpt2.encode(kept).ids) == entry["tokens"]
    assert len(gpt2.encode(long_text[: entry["text_characters"] + 1]).ids) > 128 or entry["tokens"] == 128
    assert entry["full_bits_per_char"] == pytest.approx(bits_per_char(gpt2, kept), abs=1e-5)
    recurrent = context.run(
        [lstm], context_args(long_text, "--max-window", "90", "--windows", "4", "--no-shuffle")
    )
    assert recurrent.models[0]["tokens"] == 90  # one character a token


def test_default_windows_run_on_a_log_scale_to_the_whole_text(lstm, sample_text):
    result = context.run([lstm], context_args(sample_text[:200], "--no-shuffle"))
    windows = [r["window"] for r in result.rows]
    assert windows[0] == 1 and windows[-1] == 199 and len(windows) == context.DEFAULT_POINTS
    assert np.diff(np.log(windows)).std() < 0.2  # evenly spaced on a log scale


def test_shuffled_variant_equals_shuffling_by_hand(lstm, sample_text):
    text = sample_text[:60]
    result = context.run(
        [lstm],
        context_args(text, "--windows", "2,8", "--positions", "3", "--shuffle-trials", "2", "--seed", "4"),
    )
    ids = list(lstm.encode(text).ids)
    positions = context.target_positions(len(ids), 3)
    full = {t: -next_logp(lstm, ids[: t + 2]) / math.log(2) for t in positions}
    per_char = (len(ids) - 1) / result.models[0]["characters"]
    for row in (r for r in result.rows if r["variant"] == "shuffled"):
        w = row["window"]
        increases = []
        for trial in range(2):
            gains = []
            for t in positions:
                far = np.asarray(ids[: t + 1 - w])
                np.random.default_rng([4, int(t), int(w), trial]).shuffle(far)
                seen = [*far.tolist(), *ids[t + 1 - w : t + 2]]
                gains.append(-next_logp(lstm, seen) / math.log(2) - full[t])
            increases.append(np.mean(gains) * per_char)
        assert row["bpc_increase"] == pytest.approx(np.mean(increases), abs=1e-5)
        assert row["bpc_increase_sem"] == pytest.approx(np.std(increases, ddof=1) / math.sqrt(2), abs=1e-5)
        assert row["tokens_scored"] == len(positions)


def test_shuffling_identical_tokens_changes_nothing(gpt2):
    text = "a" * 40
    result = context.run([gpt2], context_args(text, "--windows", "1,2", "--positions", "4"))
    shuffled = [r for r in result.rows if r["variant"] == "shuffled"]
    assert shuffled and all(r["bpc_increase"] == pytest.approx(0.0, abs=1e-6) for r in shuffled)
