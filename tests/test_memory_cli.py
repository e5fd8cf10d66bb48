"""`memviz memory add|info` and `memviz trace --memory`, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memviz.cli import main
from memviz.core.trace import Trace

REPO = Path(__file__).resolve().parent.parent
DOC = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n" * 3


def memviz(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "memviz", *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory, lstm_dir):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "a.txt").write_text(DOC)
    (folder / "b.txt").write_text("lazy dog, quick fox.\n" * 5)
    path = folder / "mem.sqlite"
    done = memviz(
        "memory",
        "add",
        "--store",
        str(path),
        "--model",
        str(lstm_dir),
        str(folder / "a.txt"),
        str(folder / "b.txt"),
    )
    assert done.returncode == 0, done.stderr
    assert "entries/s" in done.stdout and "entries/s" in done.stderr  # the summary and the progress bar
    return path


def test_add_then_info(store):
    expected = len(DOC) - 1 + len("lazy dog, quick fox.\n" * 5) - 1
    info = memviz("memory", "info", "--store", str(store))
    assert info.returncode == 0, info.stderr
    lines = info.stdout.splitlines()
    assert lines[0] == f"{expected} entries"
    assert "model: tiny-lstm" in info.stdout and "documents: 2" in info.stdout


def test_trace_with_memory_records_retrievals(store, lstm_dir, tmp_path):
    out = tmp_path / "run.memviz"
    rc = main(
        [
            "trace",
            "--model",
            str(lstm_dir),
            "--text",
            "the lazy dog",
            "--memory",
            str(store),
            "--knn-lambda",
            "0.5",
            "--knn-k",
            "5",
            "--knn-temperature",
            "0.5",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    trace = Trace.load(out)
    ids, scores = trace.array("memory_ids"), trace.array("memory_scores")
    assert ids.shape == scores.shape == (len(trace), 5)
    assert np.all(ids >= 1) and np.all(np.diff(scores, axis=1) <= 0), "best first"
    memory = trace.memory
    assert memory["store"] == str(store) and memory["entries"] == len(DOC) - 1 + 20 * 5 + 4
    assert (memory["k"], memory["lambda"], memory["temperature"]) == (5, 0.5, 0.5)
    for key in ("lm_topk_ids", "lm_topk_probs", "knn_topk_ids", "knn_topk_probs"):
        assert trace.has(key)


def test_another_models_store_is_refused_in_one_line(store, gpt2_dir, tmp_path):
    done = memviz(
        "trace",
        "--model",
        str(gpt2_dir),
        "--text",
        "dog",
        "--memory",
        str(store),
        "--out",
        str(tmp_path / "x.memviz"),
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("memviz: error: ")
    assert "'tiny-lstm'" in done.stderr and "'tiny-gpt2'" in done.stderr
    done = memviz("memory", "add", "--store", str(store), "--model", str(gpt2_dir), str(REPO / "README.md"))
    assert done.returncode == 2 and "belongs to model 'tiny-lstm'" in done.stderr


def test_bad_input(tmp_path, lstm_dir, capsys):
    assert main(["memory", "info", "--store", str(tmp_path / "none.sqlite")]) == 2
    assert "no memory store there" in capsys.readouterr().err
    assert (
        main(
            [
                "memory",
                "add",
                "--store",
                str(tmp_path / "s.sqlite"),
                "--model",
                str(lstm_dir),
                str(tmp_path / "missing.txt"),
            ]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "s.sqlite").exists()  # a bad file fails before a store is made
    assert (
        main(
            [
                "trace",
                "--model",
                str(lstm_dir),
                "--text",
                "dog",
                "--memory",
                str(tmp_path / "none.sqlite"),
                "--out",
                str(tmp_path / "t.memviz"),
            ]
        )
        == 2
    )
    assert "no memory store there" in capsys.readouterr().err


def test_memory_add_takes_the_device_and_dtype(tmp_path, gpt2_dir, capsys):
    """`memory add` places the model like `trace` does: the store's keys are those of a run there."""
    import torch

    doc = tmp_path / "doc.txt"
    doc.write_text(DOC)
    path = tmp_path / "placed.sqlite"
    args = ["memory", "add", "--store", str(path), "--model", str(gpt2_dir), "--quiet", str(doc)]
    assert main([*args, "--device", "cpu", "--dtype", "float32"]) == 0
    assert "entries" in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert main([*args, "--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cuda" in err[0].lower()
    assert main([*args, "--dtype", "float64"]) == 2  # not a choice: argparse's one line
    assert "invalid choice" in capsys.readouterr().err
