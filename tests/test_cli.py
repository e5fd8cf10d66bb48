"""`memviz trace` end to end, and every kind of bad input: exit 2, one line on stderr, no traceback."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

from memviz.backends.lstm import load_lstm
from memviz.cli import main

TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("memviz: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]


def load_plain(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


# -- end to end -------------------------------------------------------------------------------


def test_trace_lstm_matches_pytorch(lstm_dir, tmp_path, capsys):
    out = tmp_path / "lstm-run"  # no suffix: written exactly here, not at lstm-run.npz
    code, stdout, err = run_cli(
        capsys,
        "trace",
        "--model",
        lstm_dir,
        "--text",
        TEXT,
        "--generate",
        "6",
        "--temperature",
        "0",
        "--out",
        out,
    )
    assert code == 0, err
    assert err == ""
    assert stdout.startswith(f"wrote {out}") and "6 generated" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lstm-run"]
    arrays = load_plain(out)
    manifest = json.loads(str(arrays["manifest"][()]))
    assert manifest["format_version"] == 1
    assert manifest["model"]["architecture"] == "lstm" and manifest["model"]["num_layers"] == 3
    assert manifest["sampling"]["strategy"] == "greedy" and manifest["prompt_tokens"] == len(TEXT)
    assert manifest["memory"] is None

    model, tokenizer, config = load_lstm(lstm_dir)
    ids = arrays["token_ids"].tolist()
    T = len(TEXT) + 6
    assert ids[: len(TEXT)] == tokenizer.encode(TEXT).ids and len(ids) == T
    assert arrays["generated"].tolist() == [False] * len(TEXT) + [True] * 6
    assert "".join(arrays["token_text"][: len(TEXT)]) == TEXT
    hs, cs, logits, state = [], [], [], None
    with torch.no_grad():
        for token in ids:
            step_logits, state = model(torch.tensor([[token]]), state)
            hs.append(state[0][:, 0].numpy().copy())
            cs.append(state[1][:, 0].numpy().copy())
            logits.append(step_logits[0, -1])
    probs = torch.softmax(torch.stack(logits).double(), -1).numpy()
    L, H = config.num_layers, config.hidden_size
    assert arrays["hidden"].shape == arrays["cell"].shape == (T, L, H)
    assert arrays["gates"].shape == (T, L, 4, H) and arrays["gates"].dtype == np.float32
    np.testing.assert_allclose(arrays["hidden"], np.stack(hs), atol=1e-5, rtol=0)
    np.testing.assert_allclose(arrays["cell"], np.stack(cs), atol=1e-5, rtol=0)
    kept = np.take_along_axis(probs, arrays["topk_ids"], 1)
    np.testing.assert_allclose(arrays["topk_probs"], kept, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(arrays["topk_ids"][:, 0], probs.argmax(1))
    # Greedy: each generated token is the argmax after the token before it.
    assert ids[len(TEXT) :] == probs.argmax(1)[len(TEXT) - 1 : -1].tolist()
    assert "attention" not in arrays


def test_trace_gpt2_matches_transformers(gpt2_dir, tmp_path, capsys):
    out = tmp_path / "gpt2.memviz"
    code, stdout, err = run_cli(
        capsys,
        "trace",
        "--model",
        gpt2_dir,
        "--text",
        TEXT,
        "--generate",
        "4",
        "--seed",
        "3",
        "--temperature",
        "0.9",
        "--top-k",
        "20",
        "--dense-attention",  # format 1: the dense matrix, compared below
        "--out",
        out,
    )
    assert code == 0, err
    assert err == ""
    arrays = load_plain(out)
    manifest = json.loads(str(arrays["manifest"][()]))
    assert manifest["model"]["architecture"] == "gpt2"
    assert (manifest["model"]["num_layers"], manifest["model"]["num_heads"]) == (3, 4)
    assert manifest["sampling"] == {
        "strategy": "sample",
        "temperature": 0.9,
        "top_k": 20,
        "top_p": 1.0,
        "seed": 3,
    }
    ids = arrays["token_ids"].tolist()
    T = len(ids)
    assert arrays["generated"].sum() == 4 and manifest["prompt_tokens"] == T - 4

    model = GPT2LMHeadModel.from_pretrained(gpt2_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids]), output_attentions=True)
    ref_attention = torch.stack([a[0] for a in ref.attentions]).numpy()
    ref_probs = torch.softmax(ref.logits[0].double(), -1).numpy()
    attention = arrays["attention"].astype(np.float32)
    assert attention.shape == (3, 4, T, T)
    err_attention = np.abs(attention - ref_attention).max()
    err_probs = np.abs(arrays["topk_probs"] - np.take_along_axis(ref_probs, arrays["topk_ids"], 1)).max()
    print(f"memviz trace GPT-2 max error: attention {err_attention:.2e} probs {err_probs:.2e}")
    assert err_attention < 1e-4 and err_probs < 1e-4
    # Sampling with top-k 20 never picks a token outside the 20 kept candidates of the step before.
    for t in range(T - 4, T):
        assert ids[t] in arrays["topk_ids"][t - 1].tolist()


def test_trace_is_reproducible_with_a_seed(lstm_dir, tmp_path, capsys):
    runs = []
    for name in ("a.memviz", "b.memviz"):
        code, _, err = run_cli(
            capsys,
            "trace",
            "--model",
            lstm_dir,
            "--text",
            "fox",
            "--generate",
            "20",
            "--seed",
            "9",
            "--out",
            tmp_path / name,
        )
        assert code == 0, err
        runs.append(load_plain(tmp_path / name)["token_ids"].tolist())
    assert runs[0] == runs[1]


def test_python_dash_m_memviz(lstm_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("MEMVIZ_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-m", "memviz", "trace", "--model", str(lstm_dir), "--text", TEXT, "--out", "run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert os.listdir(tmp_path) == ["run"]
    arrays = load_plain(tmp_path / "run")
    assert len(arrays["token_ids"]) == len(TEXT)
    result = subprocess.run(
        [sys.executable, "-m", "memviz", "trace", "--model", str(lstm_dir), "--text", "", "--out", "x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert_user_error(result.returncode, result.stderr, "empty")


def test_models_lists_without_error(capsys):
    code, out, err = run_cli(capsys, "models")
    assert code == 0 and err == "" and out.strip()


def test_unknown_characters_are_reported(lstm_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "trace", "--model", lstm_dir, "--text", "fox ÄÖ", "--out", tmp_path / "u")
    assert code == 0
    assert err.startswith("memviz: warning: 2 character(s)")


# -- bad input --------------------------------------------------------------------------------


@pytest.fixture
def lstm_copy(lstm_dir, tmp_path):
    return Path(shutil.copytree(lstm_dir, tmp_path / "lstm-copy"))


@pytest.fixture
def gpt2_copy(gpt2_dir, tmp_path):
    return Path(shutil.copytree(gpt2_dir, tmp_path / "gpt2-copy"))


def trace_args(model, tmp_path, *extra):
    return ("trace", "--model", model, "--text", "fox", "--out", tmp_path / "out.memviz", *extra)


@pytest.mark.parametrize("spec", ["missing-folder", "./missing-folder"])
def test_missing_model_folder(tmp_path, capsys, spec):
    if spec.startswith("./"):
        spec = str(tmp_path / "missing-folder")
    assert_user_error(*run_cli(capsys, *trace_args(spec, tmp_path))[::2])
    assert not (tmp_path / "out.memviz").exists()


@pytest.mark.parametrize("which", ["lstm", "gpt2"])
@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_corrupt_or_missing_weights(lstm_copy, gpt2_copy, tmp_path, capsys, which, damage):
    folder = lstm_copy if which == "lstm" else gpt2_copy
    weights = folder / "model.safetensors"
    if damage == "garbage":
        weights.write_bytes(os.urandom(64) + b"not a safetensors file" * 50)
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-100])
    else:
        weights.unlink()
    code, _, err = run_cli(capsys, *trace_args(folder, tmp_path))
    assert_user_error(code, err)
    assert not (tmp_path / "out.memviz").exists()


@pytest.mark.parametrize("which", ["lstm", "gpt2"])
@pytest.mark.parametrize(
    ("broken", "says"),
    [
        ("{ not json", "config.json"),
        ("[1, 2]", "config.json"),
        ("", "config.json"),
        ('{"model_type": "memviz-lstm"}', "vocab_size"),
        ('{"model_type": "bert"}', "model_type"),
    ],
)
def test_broken_config(lstm_copy, gpt2_copy, tmp_path, capsys, which, broken, says):
    folder = lstm_copy if which == "lstm" else gpt2_copy
    (folder / "config.json").write_text(broken)
    assert_user_error(*run_cli(capsys, *trace_args(folder, tmp_path))[::2], says)


class _Marker:
    """Unpickling this creates a file (through builtins.open): proof that the pickle was opened."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("which", ["lstm", "gpt2", "bare"])
def test_pickled_checkpoint_is_refused_not_unpickled(lstm_copy, gpt2_copy, tmp_path, capsys, which):
    marker = tmp_path / "unpickled.marker"
    state = {"payload": _Marker(marker)}
    if which == "gpt2":
        folder = gpt2_copy
        state.update(GPT2LMHeadModel.from_pretrained(folder).state_dict())
    else:
        folder = lstm_copy
        state.update(load_lstm(folder)[0].state_dict())
    (folder / "model.safetensors").unlink()
    if which == "bare":  # a folder holding only pytorch_model.bin, nothing else
        for f in folder.iterdir():
            f.unlink()
    torch.save(state, folder / "pytorch_model.bin")
    assert not marker.exists()

    with pytest.MonkeyPatch.context() as mp:

        def refuse(*args, **kwargs):
            raise AssertionError("memviz tried to unpickle a file")

        for target, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
            mp.setattr(target, name, refuse)
        code, _, err = run_cli(capsys, *trace_args(folder, tmp_path))
    assert_user_error(code, err, "pickle")
    assert not marker.exists()
    # The marker works: unpickling the file for real would have created it.
    torch.load(folder / "pytorch_model.bin", weights_only=False)
    assert marker.exists()


def test_empty_text(lstm_dir, tmp_path, capsys):
    assert_user_error(
        *run_cli(capsys, "trace", "--model", lstm_dir, "--text", "", "--out", tmp_path / "o")[::2], "empty"
    )
    (tmp_path / "empty.txt").write_text("")
    code, _, err = run_cli(
        capsys, "trace", "--model", lstm_dir, "--text-file", tmp_path / "empty.txt", "--out", tmp_path / "o"
    )
    assert_user_error(code, err, "empty")
    assert not (tmp_path / "o").exists()


def test_missing_text_or_text_file(lstm_dir, tmp_path, capsys):
    assert_user_error(*run_cli(capsys, "trace", "--model", lstm_dir, "--out", tmp_path / "o")[::2])
    code, _, err = run_cli(
        capsys, "trace", "--model", lstm_dir, "--text-file", tmp_path / "nope.txt", "--out", tmp_path / "o"
    )
    assert_user_error(code, err, "nope.txt")


def test_output_folder_does_not_exist(lstm_dir, tmp_path, capsys):
    code, _, err = run_cli(
        capsys, *trace_args(lstm_dir, tmp_path)[:-1], tmp_path / "no" / "such" / "o.memviz"
    )
    assert_user_error(code, err, "does not exist")


def test_output_is_a_folder(lstm_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, *trace_args(lstm_dir, tmp_path)[:-1], tmp_path)
    assert_user_error(code, err, "folder")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_folder_read_only(lstm_dir, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code, _, err = run_cli(capsys, *trace_args(lstm_dir, tmp_path)[:-1], folder / "o.memviz")
    finally:
        folder.chmod(0o700)
    assert_user_error(code, err, "writable")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    "option",
    [
        ("--temperature", "-0.5"),
        ("--temperature", "nan"),
        ("--top-p", "0"),
        ("--top-k", "-1"),
        ("--generate", "-1"),
        ("--temperature", "warm"),
    ],
)
def test_invalid_sampling_options(lstm_dir, tmp_path, capsys, option):
    assert_user_error(
        *run_cli(capsys, *trace_args(lstm_dir, tmp_path, *option))[::2], option[0].lstrip("-")[:4]
    )
    assert not (tmp_path / "out.memviz").exists()


@pytest.mark.parametrize("which", ["lstm", "gpt2"])
def test_non_utf8_text_file_is_read_with_a_warning(lstm_dir, gpt2_dir, tmp_path, capsys, which):
    text_file = tmp_path / "latin1.txt"
    text_file.write_bytes("caf\u00e9 na\u00efve fox".encode("latin-1"))
    model = lstm_dir if which == "lstm" else gpt2_dir
    code, out, err = run_cli(
        capsys, "trace", "--model", model, "--text-file", text_file, "--out", tmp_path / "o"
    )
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("memviz: warning: ") and "UTF-8" in lines[0]
    assert "2 undecodable" in lines[0]
    arrays = load_plain(tmp_path / "o")
    if which == "lstm":
        text = "".join(arrays["token_text"])
    else:  # GPT-2 spells U+FFFD with three byte tokens: decode the ids, not the per-token texts
        from transformers import AutoTokenizer

        text = AutoTokenizer.from_pretrained(gpt2_dir).decode(arrays["token_ids"].tolist())
    assert text == "caf\ufffd na\ufffdve fox"


def test_model_is_a_file(tmp_path, capsys):
    (tmp_path / "weights.safetensors").write_bytes(b"x")
    code, _, err = run_cli(capsys, *trace_args(tmp_path / "weights.safetensors", tmp_path))
    assert_user_error(code, err, "folder")


def test_mismatched_checkpoint(lstm_dir_factory, tmp_path, capsys):
    """Weights of one size, config of another: a clear error, not a PyTorch traceback."""
    folder = lstm_dir_factory(tmp_path / "m", layers=2, hidden=8, embedding=4)
    other = lstm_dir_factory(tmp_path / "other", layers=2, hidden=12, embedding=4)
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")
    assert_user_error(*run_cli(capsys, *trace_args(folder, tmp_path))[::2], "does not match")


def test_text_longer_than_the_window(gpt2_dir_factory, tmp_path, capsys):
    """GPT-2's context window: the text is cut and generation stops there, with warnings, exit 0."""
    folder = gpt2_dir_factory(tmp_path / "short", layers=2, heads=2, embd=16, positions=16)
    capsys.readouterr()  # transformers' own progress bars while the model was made
    code, out, err = run_cli(
        capsys,
        "trace",
        "--model",
        folder,
        "--text",
        TEXT * 3,
        "--generate",
        "3",
        "--dense-attention",
        "--out",
        tmp_path / "long.memviz",
    )
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("memviz: warning: ") for line in lines)
    assert "cut to 16 of" in lines[0] and "context window" in lines[1]
    arrays = load_plain(tmp_path / "long.memviz")
    assert len(arrays["token_ids"]) == 16 and arrays["attention"].shape == (2, 2, 16, 16)
    assert "16 tokens" in out
