"""Trace format 2: queries and keys on disk while the run goes, saved in an npz that plain numpy
opens without pickle and memviz memory-maps; format 1 files still open and give the same rows;
`memviz trace --dense-attention` writes format 1; broken format-2 files are one line each.
"""

from __future__ import annotations

import csv as csv_module
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from memviz.cli import main
from memviz.core.session import Session
from memviz.core.trace import StepRecord, Trace
from memviz.errors import MemvizError
from tests.test_transformer_families import TEXT, family_configs, make_tokenizer, save_family

MEMBERS = ("queries", "keys")


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory) -> Path:
    tokenizer = make_tokenizer()
    folder = tmp_path_factory.mktemp("fmt2") / "qwen2"
    return save_family("qwen2", folder, family_configs(len(tokenizer))["qwen2"], tokenizer)


@pytest.fixture(scope="module")
def runs(qwen2_dir) -> dict[str, Trace]:
    """The same text read twice by a Qwen2 with grouped heads and a sliding layer: q/k and dense."""
    from memviz.backends.registry import load_backend

    backend = load_backend(str(qwen2_dir))
    out = {}
    for name, dense in (("qk", False), ("dense", True)):
        session = Session(backend, dense_attention=dense)
        session.feed(TEXT)
        session.run()
        out[name] = session.trace
    return out


def plain_numpy(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def test_format_2_file_opens_with_plain_numpy_and_memory_maps(runs, tmp_path):
    trace = runs["qk"]
    path = trace.save(tmp_path / "run.memviz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.memviz"]
    arrays = plain_numpy(path)
    manifest = json.loads(str(arrays["manifest"][()]))
    T, layout = len(trace), trace.attention_layout
    assert manifest["format_version"] == 2 and manifest["attention_storage"] == "qk"
    assert manifest["attention_layout"] == layout.as_manifest()
    assert manifest["attention_layout"]["sliding_window"] == [None, 6]
    assert arrays["queries"].shape == (T, 2, 4, 8) and arrays["keys"].shape == (T, 2, 2, 8)
    assert arrays["keys"].dtype == np.float32 and "attention" not in arrays
    with zipfile.ZipFile(path) as archive:  # q/k stored, so they can be mapped; the rest deflated
        kinds = {i.filename: i.compress_type for i in archive.infolist()}
    assert kinds["queries.npy"] == kinds["keys.npy"] == zipfile.ZIP_STORED
    assert kinds["topk_probs.npy"] == zipfile.ZIP_DEFLATED
    loaded = Trace.load(path)
    assert loaded.attention_storage == "qk" and loaded.attention_layout == layout
    assert loaded.disk_nbytes == arrays["queries"].nbytes + arrays["keys"].nbytes  # mapped, not read
    np.testing.assert_array_equal(loaded.attention_tensor(), trace.attention_tensor())
    assert loaded.token_ids == trace.token_ids
    np.testing.assert_array_equal(loaded.array("topk_probs"), trace.array("topk_probs"))
    again = Trace.load(loaded.save(tmp_path / "again.memviz"))  # saved from the memory map
    np.testing.assert_array_equal(again.attention_rows_at(T - 1), trace.attention_rows_at(T - 1))


def test_format_1_still_opens_and_gives_the_same_rows(runs, tmp_path):
    dense, qk = runs["dense"], runs["qk"]
    path = dense.save(tmp_path / "dense.memviz")
    arrays = plain_numpy(path)
    manifest = json.loads(str(arrays["manifest"][()]))
    assert manifest["format_version"] == 1 and manifest["attention_storage"] == "dense"
    assert "--dense-attention" in manifest["attention_storage_reason"]
    T = len(dense)
    assert arrays["attention"].shape == (2, 4, T, T) and "queries" not in arrays
    loaded = Trace.load(path)
    assert loaded.attention_storage == "dense"
    np.testing.assert_allclose(loaded.attention_tensor(), qk.attention_tensor(), atol=1e-5, rtol=0)
    for t in (0, 9, T - 1):
        np.testing.assert_allclose(loaded.attention_rows_at(t), qk.attention_rows_at(t), atol=1e-5, rtol=0)
        np.testing.assert_allclose(
            loaded.attention_row(t, 1, 2), qk.attention_row(t, 1, 2), atol=1e-5, rtol=0
        )
    np.testing.assert_allclose(
        loaded.attention_matrix(1, 3, 4, 20), qk.attention_matrix(1, 3, 4, 20), atol=1e-5
    )
    # a format 1 file from before this change (no attention_storage key) opens as dense too
    manifest.pop("attention_storage")
    manifest.pop("attention_storage_reason")
    old = tmp_path / "old.memviz"
    with old.open("wb") as handle:
        np.savez_compressed(handle, **{**arrays, "manifest": np.array(json.dumps(manifest))})
    older = Trace.load(old)
    assert older.attention_storage == "dense"
    np.testing.assert_array_equal(older.attention_tensor(), loaded.attention_tensor())


def test_dense_attention_option_writes_format_1(qwen2_dir, tmp_path, capsys):
    paths = {}
    for name, extra in (("qk", []), ("dense", ["--dense-attention"])):
        paths[name] = tmp_path / f"{name}.memviz"
        argv = ["trace", "--model", str(qwen2_dir), "--text", TEXT, "--out", str(paths[name]), *extra]
        assert main(argv) == 0, capsys.readouterr().err
    versions = {
        n: json.loads(str(plain_numpy(p)["manifest"][()]))["format_version"] for n, p in paths.items()
    }
    assert versions == {"qk": 2, "dense": 1}
    assert "attention" in plain_numpy(paths["dense"]) and "queries" in plain_numpy(paths["qk"])
    # the CSV export reads both the same (it asks the trace for rows, however they are held)
    csv = {}
    for name, path in paths.items():
        out = tmp_path / f"{name}.csv"
        argv = ["export", "--trace", str(path), "--format", "csv", "--series", "attention", "--out", str(out)]
        assert main([*argv, "--layer", "1", "--head", "2"]) == 0, capsys.readouterr().err
        with out.open(newline="", encoding="utf-8") as handle:
            rows = list(csv_module.reader(handle))[1:]
        csv[name] = np.array([[float(v) for v in row[2:]] for row in rows])
    assert csv["qk"].shape == (len(Trace.load(paths["qk"])),) * 2
    np.testing.assert_allclose(csv["qk"], csv["dense"], atol=1e-5)


def test_the_run_appends_to_npy_files_that_survive_a_crash(qwen2_dir, tmp_path):
    """While the run goes, q and k are valid .npy files of the steps so far; a process that dies
    mid-run (no clean-up) leaves them readable by numpy."""
    code = textwrap.dedent(
        f"""
        import os, sys
        from memviz.backends.registry import load_backend
        from memviz.core.session import Session
        session = Session(load_backend({str(qwen2_dir)!r}))
        session.feed({TEXT!r})
        for _ in range(11):
            session.step()
        print(*session.trace.attention_files, sep="\\n", flush=True)
        os._exit(3)  # a crash: no finaliser, no save
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr
    queries, keys = (Path(line) for line in result.stdout.split())
    try:
        q, k = np.load(queries), np.load(keys, mmap_mode="r")
        assert q.shape == (11, 2, 4, 8) and k.shape == (11, 2, 2, 8)
        assert np.isfinite(q).all() and np.abs(k).sum() > 0
    finally:
        import shutil

        shutil.rmtree(queries.parent, ignore_errors=True)


def test_spool_files_grow_and_go_with_the_trace(runs):
    from memviz.backends.registry import load_backend

    trace = runs["qk"]
    queries, keys = trace.attention_files
    assert np.load(queries).shape[0] == len(trace) == np.load(keys).shape[0]
    np.testing.assert_array_equal(np.load(queries), trace.to_arrays()["queries"])
    session = Session(load_backend(str(runs["qk"].model["source"])))
    session.feed("The lazy dog.")
    session.run()
    folder = session.trace.attention_files[0].parent
    assert folder.is_dir()
    del session
    import gc

    gc.collect()
    assert not folder.exists()  # the temporary folder goes with the trace


def test_a_loaded_format_2_trace_goes_on_growing(runs, tmp_path):
    """Appending to a loaded trace (a resumed run) copies its rows into spool files first."""
    trace = runs["qk"]
    loaded = Trace.load(trace.save(tmp_path / "run.memviz"))
    assert loaded.attention_files == ()
    arrays = trace.to_arrays()
    extra = StepRecord(
        token_id=trace.token_ids[0],
        token_text=trace.token_text[0],
        generated=False,
        topk_ids=arrays["topk_ids"][0],
        topk_probs=arrays["topk_probs"][0],
        internals={"attention_q": arrays["queries"][-1], "attention_k": arrays["keys"][-1]},
    )
    loaded.append(extra)
    assert len(loaded) == len(trace) + 1 and len(loaded.attention_files) == 2
    q, k = loaded.queries_keys(len(trace))
    np.testing.assert_array_equal(q, arrays["queries"][-1])
    np.testing.assert_array_equal(k, arrays["keys"][-1])
    assert runs["dense"].queries_keys(0) is None
    np.testing.assert_array_equal(
        loaded.attention_rows_at(len(trace) - 1), trace.attention_rows_at(len(trace) - 1)
    )
    assert loaded.attention_rows_at(len(trace)).shape == (2, 4, len(trace) + 1)


def _write(path: Path, arrays: dict, stored=frozenset(MEMBERS)) -> Path:
    from memviz.core.trace_zip import write_npz

    with path.open("wb") as handle:
        write_npz(handle, arrays, stored=stored)
    return path


def _with_manifest(arrays: dict, **changes) -> dict:
    manifest = json.loads(str(arrays["manifest"][()]))
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    return {**arrays, "manifest": np.array(json.dumps(manifest))}


def _nan_keys(arrays: dict) -> dict:
    keys = np.array(arrays["keys"])
    keys[3, 1, 0, 2] = np.nan
    return {**arrays, "keys": keys}


CORRUPT = [
    (
        "queries missing",
        lambda a: {k: v for k, v in a.items() if k != "queries"},
        "format 2 without 'queries'",
    ),
    (
        "keys with a head too many",
        lambda a: {**a, "keys": np.concatenate([a["keys"], a["keys"][:, :, :1]], 2)},
        "'keys' has shape",
    ),
    ("queries a step short", lambda a: {**a, "queries": a["queries"][:-1]}, "'queries' has shape"),
    ("NaN in keys", _nan_keys, "'keys' holds NaN"),
    ("queries as integers", lambda a: {**a, "queries": a["queries"].astype(np.int32)}, "'queries' is int32"),
    ("no layout", lambda a: _with_manifest(a, attention_layout=None), "'attention_layout' is not an object"),
    ("storage dense in format 2", lambda a: _with_manifest(a, attention_storage="dense"), "format 2 is 'qk'"),
    (
        "layout of 3 layers",
        lambda a: _with_manifest(
            a,
            attention_layout={
                **json.loads(str(a["manifest"][()]))["attention_layout"],
                "scale": [1.0] * 3,
                "sliding_window": [None] * 3,
                "softcap": [None] * 3,
            },
        ),
        "disagrees",
    ),
]


@pytest.mark.parametrize(("what", "corrupt", "message"), CORRUPT, ids=[c[0] for c in CORRUPT])
def test_a_broken_format_2_file_is_one_line(runs, tmp_path, what, corrupt, message):
    arrays = {k: np.asarray(v) for k, v in runs["qk"].to_arrays().items()}
    path = _write(tmp_path / "bad.memviz", corrupt(arrays))
    with pytest.raises(MemvizError) as caught:
        Trace.load(path)
    text = str(caught.value)
    assert "\n" not in text and message in text and text.startswith(str(path)), text


def test_a_truncated_format_2_file_is_one_line(runs, tmp_path, capsys):
    path = runs["qk"].save(tmp_path / "run.memviz")
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 200):
        short = tmp_path / f"short{cut}.memviz"
        short.write_bytes(data[:cut])
        with pytest.raises(MemvizError) as caught:
            Trace.load(short)
        assert "\n" not in str(caught.value) and str(short) in str(caught.value)
        out = tmp_path / f"x{cut}.csv"
        argv = [
            "export",
            "--trace",
            str(short),
            "--format",
            "csv",
            "--series",
            "attention",
            "--out",
            str(out),
        ]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("memviz: error: "), err
    # a member whose bytes were overwritten in the middle (same length): caught by the zip's CRC or
    # the values check, still one line
    broken = bytearray(data)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("keys.npy")
    middle = info.header_offset + 200 + info.file_size // 2
    broken[middle : middle + 64] = b"\xff" * 64
    bad = tmp_path / "flipped.memviz"
    bad.write_bytes(bytes(broken))
    with pytest.raises(MemvizError) as caught:
        Trace.load(bad)
    assert "\n" not in str(caught.value)
