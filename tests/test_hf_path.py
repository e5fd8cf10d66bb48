"""The Hugging Face path: a model id resolves through transformers' cache, offline, by the same code
that downloads `gpt2` for users with the network; an uncached id offline gives a clear message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np


def _run(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "memviz", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_model_id_loads_from_hugging_face_cache(gpt2_dir, tmp_path):
    # The hub cache layout: models--{org}--{name}/refs/main -> snapshots/{commit}/files
    repo = tmp_path / "hub" / "models--memviz-test--tiny-gpt2"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(gpt2_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    out = tmp_path / "run.memviz"
    result = _run(
        ["trace", "--model", "memviz-test/tiny-gpt2", "--text", "The quick brown fox", "--dense-attention"]
        + ["--out", str(out)],
        {"HF_HUB_CACHE": str(tmp_path / "hub")},
    )
    assert result.returncode == 0, result.stderr
    with np.load(out, allow_pickle=False) as trace:
        assert trace["attention"].shape[:2] == (3, 4)
        assert len(trace["token_ids"]) > 0


def test_uncached_model_id_offline_names_bundled_models(tmp_path):
    result = _run(
        ["trace", "--model", "memviz-test/not-there", "--text", "hi", "--out", str(tmp_path / "x.memviz")],
        {"HF_HUB_CACHE": str(tmp_path / "empty-hub")},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("memviz: error: cannot download 'memviz-test/not-there'")
    assert "bundled models" in lines[0]
    assert not (tmp_path / "x.memviz").exists()
