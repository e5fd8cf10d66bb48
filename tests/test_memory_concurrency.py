"""The memory store under other processes, damage and kills (issue 13, item 15), on real SQLite
files, real subprocesses and the real tiny LSTM: creation races, concurrent writers' counts, damaged
rows, corrupted pages, another process's lock, and a killed add's index catching up."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from memviz.cli import main
from memviz.errors import MemvizError

REPO = Path(__file__).resolve().parent.parent
TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n"


@pytest.fixture(scope="module")
def lstm(lstm_dir):
    from memviz.backends.registry import load_backend

    return load_backend(str(lstm_dir))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _memviz(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "memviz", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    finally:
        conn.close()


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("memviz: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- creating a store at once ------------------------------------------------------------------------
def test_two_memory_add_on_a_new_store_at_once(tmp_path, lstm_dir):
    """The real CLI, twice at once on the same new store, three times: both succeed, and the one
    that ends last reports the store's total (both documents), not its own count."""
    doc = tmp_path / "doc.txt"
    doc.write_text(TEXT)
    per_add = len(TEXT) - 1
    for attempt in range(3):
        store = tmp_path / f"new{attempt}.sqlite"
        adds = [
            _memviz("memory", "add", "--quiet", "--store", str(store), "--model", str(lstm_dir), str(doc))
        ]
        adds.append(
            _memviz("memory", "add", "--quiet", "--store", str(store), "--model", str(lstm_dir), str(doc))
        )
        results = [p.communicate(timeout=180) for p in adds]
        for p, (_out, err) in zip(adds, results, strict=True):
            assert p.returncode == 0, err
            assert "not a memviz memory store" not in err
        assert _count(store) == 2 * per_add
        totals = [int(out.strip().splitlines()[-1].split(": ")[1].split()[0]) for out, _ in results]
        assert max(totals) == 2 * per_add and min(totals) >= per_add, totals


RACER = """
    import sys, time
    from pathlib import Path
    from memviz.backends.registry import load_backend
    from memviz.memory.store import MemoryStore
    backend = load_backend(sys.argv[1])
    folder, start, rounds = Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    for i in range(rounds):
        while time.time() < start + 0.8 * i:  # both processes open store i at the same instant
            pass
        try:
            store = MemoryStore.open(folder / f"s{i}.sqlite", backend=backend, create=True)
            result = store.add_document(sys.argv[5], "doc", backend, batch_size=8)
            print(i, "ok", result.entries, result.store_entries, flush=True)
            store.close()
        except Exception as exc:
            print(i, "failed", type(exc).__name__, exc, flush=True)
"""


def test_opening_a_new_store_at_the_same_instant_never_fails(tmp_path, lstm_dir):
    """Two processes open (create) each of 10 new stores at the same moment, then add to it in
    small batches, interleaving their commits: every open succeeds, every key is indexed once."""
    rounds = 10
    start = time.time() + 8  # time to import torch and load the model
    racers = [_python(RACER, str(lstm_dir), str(tmp_path), str(start), str(rounds), TEXT) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in racers]
    assert all(p.returncode == 0 for p in racers), [err for _, err in outs]
    lines = [line.split() for out, _ in outs for line in out.splitlines()]
    assert not [line for line in lines if line[1] != "ok"], lines
    per_add = len(TEXT) - 1
    for i in range(rounds):
        mine = [line for line in lines if line[0] == str(i)]
        assert [int(line[2]) for line in mine] == [per_add, per_add]
        assert max(int(line[3]) for line in mine) == 2 * per_add  # the last to finish sees both
    from memviz.backends.registry import load_backend
    from memviz.memory.store import MemoryStore

    backend = load_backend(str(lstm_dir))
    store = MemoryStore.open(tmp_path / "s0.sqlite", backend=backend)
    conn = sqlite3.connect(store.path)
    rows = conn.execute("SELECT id, key, next_token FROM entries ORDER BY id").fetchall()
    conn.close()
    assert len(store) == len(rows) == 2 * per_add and not store.index_rebuilt
    for _entry_id, key, value in rows[:: max(1, len(rows) // 20)]:
        ids, distances, values = store.search(np.frombuffer(key, dtype=np.float32), 1)
        assert distances[0] < 1e-6 and values[0] == value
    store.close()


# -- damaged rows and pages -----------------------------------------------------------------------
def _filled_store(path: Path, lstm, text: str = TEXT):
    from memviz.memory.store import MemoryStore

    store = MemoryStore.open(path, backend=lstm, create=True)
    store.add_document(text, "doc", lstm, batch_size=16)
    store.close()
    return path


def test_a_damaged_key_row_is_left_out_and_the_rest_stays_usable(tmp_path, lstm, capsys):
    from memviz.memory.store import MemoryStore

    path = _filled_store(tmp_path / "rows.sqlite", lstm)
    good = _count(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE entries SET key = x'0102' WHERE id = 5")  # 2 bytes, not key_dim floats
    conn.execute("UPDATE entries SET next_token = 'seven' WHERE id = 9")
    conn.commit()
    conn.close()
    path.with_name(path.name + ".faiss").unlink()  # rebuilt from the database, rows included

    notices: list[str] = []
    store = MemoryStore.open(path, backend=lstm, notice=notices.append)
    assert store.skipped_entries == 2 and len(store) == good - 2
    assert any("2 entries" in n and "left out" in n for n in notices), notices
    key = store.keys([20])[0]
    ids, distances, _values = store.search(key, 3)
    assert ids[0] == 20 and distances[0] < 1e-6 and not {5, 9} & set(ids.tolist())
    store.close()

    assert main(["memory", "info", "--store", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"{good - 2} entries" in out and "left out" in err


def _corrupt_pages(path: Path, first_page: int = 3) -> None:
    conn = sqlite3.connect(path)
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    data[first_page * page :] = rng.integers(0, 256, len(data) - first_page * page, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    path.with_name(path.name + ".faiss").unlink(missing_ok=True)


def test_corrupted_pages_are_one_line_exit_2(tmp_path, lstm, lstm_dir, capsys):
    path = _filled_store(tmp_path / "bad.sqlite", lstm, TEXT * 20)
    _corrupt_pages(path)
    doc = tmp_path / "doc.txt"
    doc.write_text(TEXT)
    for argv in (
        ["memory", "info", "--store", str(path)],
        ["memory", "add", "--quiet", "--store", str(path), "--model", str(lstm_dir), str(doc)],
    ):
        capsys.readouterr()
        assert main(argv) == 2
        line = _one_line(capsys.readouterr().err)
        assert "is corrupt" in line and str(path) in line, line


# -- another process's lock ------------------------------------------------------------------------
HOLDER = """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    if sys.argv[2] == "exclusive-mode":
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("SELECT COUNT(*) FROM entries").fetchone()
    print("holding", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("mode", ["begin-exclusive", "exclusive-mode"])
def test_a_lock_held_by_another_process_is_busy_not_a_bad_store(tmp_path, lstm, lstm_dir, mode):
    path = _filled_store(tmp_path / "locked.sqlite", lstm)
    doc = tmp_path / "doc.txt"
    doc.write_text(TEXT)
    holder = _python(HOLDER, str(path), mode)
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        add = _memviz("memory", "add", "--quiet", "--store", str(path), "--model", str(lstm_dir), str(doc))
        _out, err = add.communicate(timeout=120)
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert add.returncode == 2, err
    line = _one_line(err)
    assert "busy: another process holds the store's lock" in line and "not a memviz" not in line
    assert "waiting for another process" in err  # said while waiting, not after 30 s of silence
    assert elapsed < 25


# -- a killed add ----------------------------------------------------------------------------------
WRITER = """
    import sys, time
    from memviz.backends.registry import load_backend
    from memviz.memory.store import MemoryStore
    b = load_backend(sys.argv[1])
    s = MemoryStore.open(sys.argv[2], backend=b)
    def progress(done, total):
        print(done, flush=True)
        time.sleep(0.1)  # pace the writer so the kill lands seconds into the document
    s.add_document(open(sys.argv[3]).read(), "long", b, progress=progress, batch_size=64)
"""


def test_after_a_killed_add_the_index_catches_up_a_little_with_progress(tmp_path, lstm, lstm_dir):
    import faiss

    from memviz.memory.store import MemoryStore

    path = _filled_store(tmp_path / "killed.sqlite", lstm)
    before = _count(path)
    long_text = (TEXT * 400)[:20_000]
    (tmp_path / "long.txt").write_text(long_text)
    writer = _python(WRITER, str(lstm_dir), str(path), str(tmp_path / "long.txt"))
    for line in writer.stdout:
        if int(line) >= 64 * 45:  # about 5 s of adding
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    committed = _count(path)
    saved = faiss.read_index(str(path.with_name(path.name + ".faiss"))).ntotal
    assert saved > before + 64, "the index was saved while the add ran, not only at its end"
    behind = committed - saved
    assert 0 <= behind < (committed - before) / 2

    notices: list[str] = []
    calls: list[tuple[int, int]] = []
    store = MemoryStore.open(
        path, backend=lstm, notice=notices.append, progress=lambda d, t: calls.append((d, t))
    )
    assert len(store) == committed and not store.index_rebuilt
    if behind:
        assert calls and calls[-1] == (behind, behind), calls
        assert any(f"{behind} entries behind" in n for n in notices), notices
    conn = sqlite3.connect(path)
    (key, value) = conn.execute("SELECT key, next_token FROM entries ORDER BY id DESC LIMIT 1").fetchone()
    conn.close()
    _ids, distances, values = store.search(np.frombuffer(key, dtype=np.float32), 1)
    assert distances[0] < 1e-6 and values[0] == value  # the last committed entry's key is indexed
    store.close()


def test_a_new_store_in_another_programs_database_is_refused(tmp_path, lstm):
    from memviz.memory.store import MemoryStore

    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    with pytest.raises(MemvizError, match="not a memviz memory store"):
        MemoryStore.open(path, backend=lstm, create=True)
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["photos"]
    conn.close()
