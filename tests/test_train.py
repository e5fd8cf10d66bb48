"""`memviz train` and `memviz eval` on tiny models: checkpoints load, runs resume, Ctrl-C saves,
and bits per character equal the model's own per-step probabilities."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from memviz.backends.registry import load_backend
from memviz.cli import main
from memviz.core.session import Session

LSTM_ARGS = ["--hidden", "16", "--layers", "2", "--batch-size", "4", "--seq-len", "16", "--threads", "1"]
GPT2_ARGS = [
    "--layers",
    "1",
    "--heads",
    "2",
    "--hidden",
    "32",
    "--vocab-size",
    "300",
    "--context",
    "64",
    "--seq-len",
    "32",
    "--batch-size",
    "2",
    "--threads",
    "1",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sample_text):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(sample_text * 60)  # ~17k characters: enough for a training and a held-out part
    return path


def session_bits(run_session, backend, text: str) -> tuple[float, int]:
    """Total bits of every token after the first, from the instrumented Session's distributions."""
    ids, bits = run_session(backend, text).trace.token_ids, 0.0
    session = Session(backend)
    for i, token in enumerate(ids[:-1]):
        session._queue.append(token)
        session.step()
        bits -= math.log2(session.last_distribution[ids[i + 1]])
    return bits, len(ids)


def test_train_lstm_resume_and_eval(run_session, corpus, tmp_path, capsys):
    out = tmp_path / "lstm"
    assert (
        main(["train", "lstm", "--corpus", str(corpus), "--out", str(out), "--max-steps", "6", *LSTM_ARGS])
        == 0
    )
    assert json.loads((out / "training.json").read_text())["steps"] == 6
    first = load_backend(str(out))
    assert (
        main(["train", "lstm", "--corpus", str(corpus), "--out", str(out), "--max-steps", "10", *LSTM_ARGS])
        == 0
    )
    assert json.loads((out / "train_state.json").read_text())["step"] == 10  # resumed, not restarted
    backend = load_backend(str(out))
    assert backend.fingerprint() != first.fingerprint()
    text = "def f(x): return x + 1\nThe quick brown fox."
    (tmp_path / "t.txt").write_text(text)
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--text-file", str(tmp_path / "t.txt"), "--json"]) == 0
    reported = json.loads(capsys.readouterr().out)["bits_per_char"]
    bits, n = session_bits(run_session, backend, text)
    assert reported == pytest.approx(bits / (n - 1), rel=1e-4)


def test_train_gpt2_and_eval(run_session, corpus, tmp_path, capsys):
    out = tmp_path / "gpt2"
    assert (
        main(["train", "gpt2", "--corpus", str(corpus), "--out", str(out), "--max-steps", "3", *GPT2_ARGS])
        == 0
    )
    backend = load_backend(str(out))  # Hugging Face format: the real GPT-2 code path
    assert backend.info.architecture == "gpt2" and backend.info.context_size == 64
    text = "The quick brown fox jumps over the lazy dog."
    (tmp_path / "t.txt").write_text(text)
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--text-file", str(tmp_path / "t.txt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    bits, _ = session_bits(run_session, backend, text)
    first_token_chars = len(backend.tokenizer.decode(backend.encode(text).ids[:1]))
    assert result["bits_per_char"] == pytest.approx(bits / (len(text) - first_token_chars), rel=1e-4)
    assert np.isfinite(result["induction_first_copy_loss"]) and np.isfinite(
        result["induction_second_copy_loss"]
    )


def test_copy_rows_and_constant_lr(corpus, tmp_path):
    """The copy phases' options: random-token rows train and resume; --constant-lr holds the rate."""
    from memviz.train.loop import TrainConfig, lr_at

    out = tmp_path / "gpt2-copy"
    args = [
        "train",
        "gpt2",
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        *GPT2_ARGS,
        "--random-copy-fraction",
        "0.5",
        "--copy-fraction",
        "0.25",
        "--constant-lr",
    ]
    assert main([*args, "--max-steps", "2"]) == 0
    assert main([*args, "--max-steps", "4"]) == 0  # resumed, extended
    assert json.loads((out / "train_state.json").read_text())["step"] == 4
    cfg = TrainConfig(max_steps=1000, lr=1e-3, warmup=10)
    assert lr_at(5, cfg) == pytest.approx(6e-4) and lr_at(999, cfg) == pytest.approx(1e-4, rel=1e-3)
    cfg.constant_lr = True
    assert lr_at(5, cfg) == pytest.approx(6e-4) and lr_at(500, cfg) == lr_at(999, cfg) == 1e-3
    assert (
        main([*args[:-3], "--random-copy-fraction", "0.9", "--copy-fraction", "0.5", "--max-steps", "5"]) != 0
    )


def test_ctrl_c_saves_a_loadable_checkpoint(corpus, tmp_path):
    out = tmp_path / "interrupted"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "memviz",
            "train",
            "lstm",
            "--corpus",
            str(corpus),
            "--out",
            str(out),
            "--max-steps",
            "100000",
            *LSTM_ARGS,
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.time() + 120
    seen = ""
    while "loss" not in seen and time.time() < deadline:  # the progress bar shows the first steps
        seen += process.stderr.read(1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, seen + stderr
    state = json.loads((out / "train_state.json").read_text())
    assert 0 < state["step"] < 100000
    assert load_backend(str(out)).info.architecture == "lstm"


def test_missing_corpus_is_one_line(tmp_path, capsys):
    assert main(["train", "lstm", "--corpus", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corpus not found" in err[0] and "python3.11-doc" in err[0]
