"""A run written to disk as it goes (memviz.core.run_folder): recurrent runs of any length with RAM
that does not grow, and a run that was killed rebuilt by `memviz recover`.

The long run is a real 1-layer, 8-unit LSTM reading 60,000 tokens (past the old 50,000 cap),
checked against PyTorch's own nn.LSTM over the whole sequence."""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from memviz.cli import main
from memviz.core.trace import StepRecord, Trace
from memviz.errors import MemvizError

LONG = 60_000


@pytest.fixture(autouse=True)
def runs_dir(tmp_path, monkeypatch) -> Path:
    """Every run folder of these tests in the test's own folder (memviz.paths.runs_folder)."""
    folder = tmp_path / "runs"
    monkeypatch.setenv("MEMVIZ_RUNS_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_lstm(tmp_path_factory, lstm_dir_factory) -> Path:
    return lstm_dir_factory(tmp_path_factory.mktemp("lstm8") / "lstm8", layers=1, hidden=8, embedding=4)


def _text(sample_text: str, n: int) -> str:
    return (sample_text * (n // len(sample_text) + 1))[:n]


def _rss_anon() -> int | None:
    """This process's anonymous resident memory (bytes): what RAM the run holds, page cache apart."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@pytest.fixture(scope="module")
def long_run(tiny_lstm, sample_text, tmp_path_factory):
    """60,000 tokens through the Session, RSS noted at 10,000 and at the end."""
    from memviz.backends.registry import load_backend
    from memviz.core.session import Session

    before = os.environ.get("MEMVIZ_RUNS_DIR")
    os.environ["MEMVIZ_RUNS_DIR"] = str(tmp_path_factory.mktemp("long-runs"))
    try:
        session = Session(load_backend(str(tiny_lstm)))
        warnings = session.feed(_text(sample_text, LONG))
        rss = {}

        def progress(steps: int) -> None:
            if steps in (10_000, LONG):
                gc.collect()
                rss[steps] = _rss_anon()

        session.run(progress=progress)
    finally:
        if before is None:
            del os.environ["MEMVIZ_RUNS_DIR"]
        else:
            os.environ["MEMVIZ_RUNS_DIR"] = before
    return session, warnings, rss


def test_an_lstm_reads_past_50000_tokens_as_nn_lstm_does(long_run, tiny_lstm):
    import torch

    from memviz.backends.lstm import load_lstm

    session, warnings, _ = long_run
    trace = session.trace
    assert warnings == [] and session.stop_reason is None  # no cap: nothing cut
    assert len(trace) == LONG
    model, _, _ = load_lstm(tiny_lstm)
    ids = torch.tensor([trace.token_ids])
    with torch.no_grad():
        top, (h_n, c_n) = model.lstm(model.embedding(ids))
        probs = torch.softmax(model.head(top[0]).double(), dim=-1).numpy()
    hidden, cell = trace.array("hidden"), trace.array("cell")
    assert hidden.shape == (LONG, 1, 8) and trace.array("gates").shape == (LONG, 1, 4, 8)
    np.testing.assert_allclose(hidden[:, 0], top[0].numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(cell[-1, 0], c_n[0, 0].numpy(), atol=1e-5, rtol=0)
    for t in (49_999, 50_000, LONG - 2):  # the cell state past the old cap, from nn.LSTM on the prefix
        with torch.no_grad():
            _, (_, c_t) = model.lstm(model.embedding(ids[:, : t + 1]))
        np.testing.assert_allclose(cell[t, 0], c_t[0, 0].numpy(), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(trace.array("topk_ids")[:, 0], probs.argmax(axis=1))
    # target_logprob (filled one step late, in place in the spooled column): log p of the next token
    expected = np.log(probs[np.arange(LONG - 1), trace.token_ids[1:]])
    np.testing.assert_allclose(trace.array("target_logprob")[:-1], expected, atol=1e-4, rtol=0)
    assert np.isnan(trace.array("target_logprob")[-1])


def test_the_long_run_is_on_disk_not_in_ram(long_run):
    session, _, rss = long_run
    trace = session.trace
    folder = trace.spool_folder
    assert folder is not None and (folder / "col-hidden.npy").is_file()
    per_step = sum(trace.array(k)[0].nbytes for k in trace.column_names)  # ~680 bytes a step
    assert trace.nbytes < 64 * 2**10 < per_step * LONG // 100  # RAM: the columns are memory maps
    assert trace.spool_nbytes >= per_step * LONG
    for key in trace.column_names:  # each file a valid .npy of every step, equal to the view
        np.testing.assert_array_equal(np.load(folder / f"col-{key}.npy"), trace.array(key))
    if rss.get(10_000) is not None:
        # 50,000 more steps: the columns alone would be 32 MB in RAM; what grows is the token lists
        # (four pointers a step: a character model's ids, texts and bytes are Python's shared objects)
        grown = rss[LONG] - rss[10_000]
        print(
            f"RssAnon grew {grown / 2**20:.1f} MB over 50,000 steps (columns: {per_step * 50_000 / 2**20:.1f} MB)"
        )
        assert grown < per_step * 50_000 / 4


def test_a_spooled_trace_saves_loads_and_recovers_exactly(long_run, tmp_path):
    trace = long_run[0].trace
    saved = trace.to_arrays()
    loaded = Trace.load(trace.save(tmp_path / "long.memviz"))
    recovered = Trace.recover(trace.spool_folder)  # the live run's folder: all of it
    for other in (loaded, recovered):
        arrays = other.to_arrays()
        assert set(arrays) == set(saved)
        for key in saved:
            np.testing.assert_array_equal(arrays[key], saved[key], err_msg=key)
        assert other.token_bytes == trace.token_bytes and other.vocab == trace.vocab
        assert other.manifest() == trace.manifest()


def test_fill_rewrites_a_spooled_row_in_place(tiny_lstm, sample_text):
    from memviz.backends.registry import load_backend
    from memviz.core.session import Session

    session = Session(load_backend(str(tiny_lstm)))
    session.feed(sample_text[:40])
    session.run()
    trace = session.trace
    path = trace.spool_folder / "col-target_logprob.npy"
    before = np.load(path)
    trace.fill("target_logprob", 7, -1.5)
    after = np.load(path)
    assert after.shape == before.shape == (40,)  # the header still says 40 rows
    assert trace.array("target_logprob")[7] == after[7] == np.float32(-1.5)
    np.testing.assert_array_equal(np.delete(after, 7), np.delete(before, 7))
    with pytest.raises(IndexError):
        trace.fill("target_logprob", 40, 0.0)  # a row not written yet


def test_a_reader_on_another_thread_never_sees_a_half_row(tiny_lstm, sample_text):
    from memviz.backends.registry import load_backend
    from memviz.core.session import Session

    session = Session(load_backend(str(tiny_lstm)))
    session.feed(_text(sample_text, 4000))
    trace = session.trace
    bad: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            # a short sleep a look: a reader that never lets go of the GIL makes every GIL hand-back
            # of the run wait its switch interval (5 ms), and 4,000 steps took over 10 minutes
            time.sleep(0.0002)
            n = len(trace)
            if n == 0:
                continue
            gates, topk = trace.array("gates"), trace.array("topk_probs")
            if len(gates) < n or not (gates[n - 1] != 0).all() or not (topk[n - 1] > 0).all():
                bad.append(f"step {n - 1}")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        session.run()
    finally:
        done.set()
        reader.join()
    assert bad == [] and len(trace) == 4000


SCRIPT = """
import os, signal, sys
from memviz.backends.registry import load_backend
from memviz.core.sampling import SamplingConfig
from memviz.core.session import Session
session = Session(load_backend(sys.argv[1]), sampling=SamplingConfig(temperature=0.9, top_k=5, seed=7))
session.feed(sys.argv[2])
session.generate(400)
kill_at = int(sys.argv[3])

def progress(steps):
    if steps == 1:
        print(session.trace.spool_folder, flush=True)
    if kill_at and steps == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

session.run(progress=progress)
print("done", len(session.trace), flush=True)
"""


def _run_script(tiny_lstm: Path, text: str, kill_at: int, runs_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MEMVIZ_RUNS_DIR": str(runs_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_lstm), text, str(kill_at)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_a_killed_run_is_recovered_by_memviz_recover(tiny_lstm, sample_text, runs_dir, tmp_path, capsys):
    from memviz.backends.registry import load_backend
    from memviz.core.sampling import SamplingConfig
    from memviz.core.session import Session

    text = _text(sample_text, 2000)
    result = _run_script(tiny_lstm, text, 2200, runs_dir)  # killed among the generated tokens
    assert result.returncode == -signal.SIGKILL, result.stderr
    folder = Path(result.stdout.split()[0])
    assert folder.parent == runs_dir and folder.is_dir()  # SIGKILL: no clean-up, the folder stays

    assert main(["recover"]) == 0
    listed = capsys.readouterr().out
    assert folder.name in listed and "stopped" in listed and "2,2" in listed
    out = tmp_path / "recovered.memviz"
    assert main(["recover", folder.name, "--out", str(out)]) == 0, capsys.readouterr().err
    assert f"recovered from {folder}" in capsys.readouterr().out
    recovered = Trace.load(out)
    T = len(recovered)
    assert 2200 <= T <= 2201  # what the kill left: every complete step

    session = Session(load_backend(str(tiny_lstm)), sampling=SamplingConfig(temperature=0.9, top_k=5, seed=7))
    session.feed(text)
    session.generate(400)
    session.run()
    full = session.trace
    assert recovered.token_ids == full.token_ids[:T] and recovered.generated == full.generated[:T]
    assert sum(recovered.generated) == T - 2000 and recovered.token_bytes == full.token_bytes[:T]
    for key in full.column_names:
        got, want = recovered.array(key), full.array(key)[:T]
        if key == "target_logprob":  # the last step's comes with the next token: NaN, or the same
            assert np.isnan(got[-1]) or got[-1] == want[-1]
            got, want = got[:-1], want[:-1]
        np.testing.assert_array_equal(got, want, err_msg=key)
    assert recovered.manifest() == full.manifest()
    assert all(full.vocab[i] == t for i, t in recovered.vocab.items())

    assert main(["recover", str(folder), "--out", str(tmp_path / "again.memviz"), "--remove"]) == 0
    assert not folder.exists()


def test_a_run_that_ends_normally_leaves_no_folder(tiny_lstm, sample_text, runs_dir):
    result = _run_script(tiny_lstm, sample_text[:50], 0, runs_dir)
    assert result.returncode == 0 and "done 450" in result.stdout, result.stderr
    assert not Path(result.stdout.split()[0]).exists()
    assert list(runs_dir.iterdir()) == []


def test_the_folder_goes_with_the_trace(tiny_lstm, sample_text, runs_dir):
    from memviz.backends.registry import load_backend
    from memviz.core.session import Session

    session = Session(load_backend(str(tiny_lstm)))
    session.feed(sample_text[:30])
    session.run()
    folder = session.trace.spool_folder
    assert folder.parent == runs_dir and (folder / "tokens.jsonl").is_file()
    del session
    gc.collect()
    assert not folder.exists()


@pytest.fixture
def finished_folder(tiny_lstm, sample_text, tmp_path):
    """A copy of a finished run's folder (the trace and its own folder stay alive beside it)."""
    from memviz.backends.registry import load_backend
    from memviz.core.session import Session

    session = Session(load_backend(str(tiny_lstm)))
    session.feed(sample_text[:60])
    session.run()
    copy = tmp_path / "copy"
    shutil.copytree(session.trace.spool_folder, copy)
    return session.trace, copy


def _one_line_error(folder: Path, tmp_path: Path, capsys) -> str:
    assert main(["recover", str(folder), "--out", str(tmp_path / "x.memviz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("memviz: error: ")
    assert not (tmp_path / "x.memviz").exists()
    return err


def test_a_cut_last_step_is_dropped(finished_folder):
    trace, folder = finished_folder
    tokens = folder / "tokens.jsonl"
    raw = tokens.read_bytes()
    tokens.write_bytes(raw[: len(raw) - 5])  # the last line cut mid-write
    recovered = Trace.recover(folder)
    assert len(recovered) == len(trace) - 1
    np.testing.assert_array_equal(recovered.array("hidden"), trace.array("hidden")[:-1])


def test_damaged_folders_give_one_line_errors(finished_folder, tmp_path, capsys):
    trace, folder = finished_folder
    assert "not a memviz run folder" in _one_line_error(tmp_path, tmp_path, capsys)
    assert "no such run folder" in _one_line_error(tmp_path / "nowhere", tmp_path, capsys)

    column = folder / "col-gates.npy"
    good = column.read_bytes()
    row = 4 * 8 * 4
    column.write_bytes(good[: 256 + row * (len(trace) - 3)])  # rows lost (the header says more)
    assert "col-gates.npy: truncated" in _one_line_error(folder, tmp_path, capsys)
    column.write_bytes(b"garbage")
    assert "col-gates.npy: not a spool file" in _one_line_error(folder, tmp_path, capsys)
    column.write_bytes(good)

    tokens = folder / "tokens.jsonl"
    lines = tokens.read_bytes().split(b"\n")
    tokens.write_bytes(b"\n".join([lines[0], b"[1, 2", *lines[2:]]))  # a complete line that is no step
    assert "tokens.jsonl line 2" in _one_line_error(folder, tmp_path, capsys)
    tokens.write_bytes(b"")
    assert "no complete step" in _one_line_error(folder, tmp_path, capsys)
    tokens.write_bytes(b"\n".join(lines))

    manifest = folder / "manifest.json"
    run = json.loads(manifest.read_text())
    manifest.write_text("{")
    assert "manifest.json is not a run's manifest" in _one_line_error(folder, tmp_path, capsys)
    run["manifest"]["model"]["hidden_size"] = 9  # disagrees with the columns: what load checks too
    manifest.write_text(json.dumps(run))
    _one_line_error(folder, tmp_path, capsys)
    with pytest.raises(MemvizError):
        Trace.recover(folder)


def test_a_full_disk_stops_the_run_and_keeps_what_was_read(tiny_lstm, sample_text, monkeypatch):
    from memviz.backends.registry import load_backend
    from memviz.core import npy_spool
    from memviz.core.session import Session

    session = Session(load_backend(str(tiny_lstm)))
    session.feed(sample_text[:100])
    for _ in range(30):
        session.step()
    real = os.pwrite
    calls = {"n": 0}

    def full(fd, data, offset):  # the disk fills up in the middle of step 31's columns
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(npy_spool.os, "pwrite", full)
    with pytest.raises(MemvizError) as caught:
        session.step()
    monkeypatch.setattr(npy_spool.os, "pwrite", real)
    message = str(caught.value)
    assert "\n" not in message and "No space left on device" in message and "stops at 30 steps" in message
    trace = session.trace
    assert len(trace) == 30
    assert all(len(trace.array(key)) == 30 for key in trace.column_names)
    folder = trace.spool_folder
    recovered = Trace.recover(folder)  # what was read stays on disk too
    assert recovered.token_ids == trace.token_ids
    np.testing.assert_array_equal(recovered.array("cell"), trace.array("cell"))
    del session, trace
    gc.collect()
    assert folder.exists()  # kept for `memviz recover`
    shutil.rmtree(folder)


def test_absurd_lengths_are_refused_in_one_line(tiny_lstm, tmp_path, capsys):
    out = tmp_path / "x.memviz"
    argv = ["trace", "--model", str(tiny_lstm), "--text", "The", "--generate", str(10**12), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--generate" in err and "out of range" in err
    assert not out.exists()


def test_a_loaded_trace_that_grows_writes_its_steps_first(tiny_lstm, sample_text, tmp_path):
    """A loaded trace appended to (a resumed run) starts its own folder with the steps it holds."""
    from memviz.backends.registry import load_backend
    from memviz.core.session import Session

    session = Session(load_backend(str(tiny_lstm)))
    session.feed(sample_text[:50])
    session.run()
    loaded = Trace.load(session.trace.save(tmp_path / "short.memviz"))
    assert loaded.spool_folder is None and len(loaded) == 50
    row = {k: loaded.array(k)[-1] for k in loaded.column_names}
    loaded.append(
        StepRecord(
            token_id=loaded.token_ids[0],
            token_text=loaded.token_text[0],
            generated=False,
            topk_ids=row.pop("topk_ids"),
            topk_probs=row.pop("topk_probs"),
            internals={k: row.pop(k) for k in ("gates", "cell", "hidden")},
            memory=row,
        )
    )
    recovered = Trace.recover(loaded.spool_folder)
    assert len(recovered) == 51 and recovered.token_ids == loaded.token_ids
    for key in loaded.column_names:
        np.testing.assert_array_equal(recovered.array(key), loaded.array(key), err_msg=key)
    np.testing.assert_array_equal(recovered.array("hidden")[:50], session.trace.array("hidden"))
