"""Malformed traces are bad input (issue 13, item 13): one line naming the key, exit 2, nothing drawn.

Each corruption of a real run's arrays (LSTM and GPT-2, from the conftest models) goes through the
real CLI (`memviz export --trace ... --all`, `memviz gui --trace`) and the app's File -> Open.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from memviz.cli import main
from memviz.core.trace import Trace
from memviz.errors import MemvizError


@pytest.fixture(scope="module")
def lstm_arrays(tmp_path_factory, run_session, lstm_dir_factory) -> dict[str, np.ndarray]:
    """The arrays of a real LSTM run, as its file holds them."""
    folder = lstm_dir_factory(tmp_path_factory.mktemp("lstm") / "m", layers=2, hidden=8)
    return run_session(folder, text="The quick fox.").trace.to_arrays()


@pytest.fixture(scope="module")
def gpt2_arrays(tmp_path_factory, run_session, gpt2_dir_factory) -> dict[str, np.ndarray]:
    """The arrays of a real GPT-2 run, as its file holds them (format 1: dense attention)."""
    folder = gpt2_dir_factory(tmp_path_factory.mktemp("gpt2") / "m", layers=2, heads=2)
    return run_session(folder, text="The quick fox.", dense_attention=True).trace.to_arrays()


@pytest.fixture
def runs(request) -> Callable[[str], dict[str, np.ndarray]]:
    """runs("lstm" | "gpt2"): a copy of that run's arrays (each model built only when asked)."""
    return lambda name: dict(request.getfixturevalue(f"{name}_arrays"))


def _manifest(arrays, change: Callable[[dict], object]) -> None:
    manifest = json.loads(str(arrays["manifest"][()]))
    result = change(manifest)
    arrays["manifest"] = np.array(json.dumps(manifest if result is None else result))


def _set(key: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], None]:
    def corrupt(arrays: dict) -> None:
        arrays[key] = fn(arrays[key].copy())

    return corrupt


def _nan_first(a: np.ndarray) -> np.ndarray:
    a.reshape(-1)[0] = np.nan
    return a


def _at(index, value) -> Callable[[np.ndarray], np.ndarray]:
    def put(a: np.ndarray) -> np.ndarray:
        a[index] = value
        return a

    return put


# (run, what is wrong, corruption, the key the message must name)
CORRUPTIONS = [
    ("gpt2", "attention with fewer layers", _set("attention", lambda a: a[:-1]), "attention"),
    (
        "gpt2",
        "attention with more heads",
        _set("attention", lambda a: np.concatenate([a, a], 1)),
        "attention",
    ),
    ("gpt2", "NaN attention", _set("attention", _nan_first), "attention"),
    ("gpt2", "attention as integers", _set("attention", lambda a: a.astype(np.int64)), "attention"),
    ("lstm", "hidden of the wrong width", _set("hidden", lambda a: a[..., :-1]), "hidden"),
    ("lstm", "cell with an extra layer", _set("cell", lambda a: np.concatenate([a, a], 1)), "cell"),
    ("lstm", "gates [T,L,2,H]", _set("gates", lambda a: a[:, :, :2]), "gates"),
    ("lstm", "infinite gates", _set("gates", _at((0, 0, 0, 0), np.inf)), "gates"),
    ("lstm", "top-k id beyond the vocabulary", _set("topk_ids", lambda a: a + 10_000), "topk_ids"),
    ("lstm", "negative top-k id", _set("topk_ids", _at((0, 0), -3)), "topk_ids"),
    ("gpt2", "NaN probabilities", _set("topk_probs", _at((1, 0), np.nan)), "topk_probs"),
    ("lstm", "a probability of 3", _set("topk_probs", _at((0, 0), 3.0)), "topk_probs"),
    ("lstm", "top-k probs of another width", _set("topk_probs", lambda a: a[:, :-1]), "topk_probs"),
    ("lstm", "token ids as strings", _set("token_ids", lambda a: a.astype(str)), "token_ids"),
    ("gpt2", "a token id beyond the vocabulary", _set("token_ids", _at(0, 10**9)), "token_ids"),
    ("lstm", "token text one short", _set("token_text", lambda a: a[:-1]), "token_text"),
    ("lstm", "generated as floats", _set("generated", lambda a: a.astype(np.float32)), "generated"),
    ("lstm", "vocab text one short", _set("vocab_text", lambda a: a[:-1]), "vocab_text"),
    ("lstm", "an added key with other steps", lambda arrays: arrays.update(extra=np.zeros(3)), "extra"),
    ("lstm", "manifest a JSON list", lambda a: _manifest(a, lambda m: [m]), "manifest"),
    ("lstm", "manifest a JSON number", lambda a: _manifest(a, lambda m: 3), "manifest"),
    ("lstm", "model a list", lambda a: _manifest(a, lambda m: m.update(model=[1])), "model"),
    (
        "lstm",
        "num_layers as text",
        lambda a: _manifest(a, lambda m: m["model"].update(num_layers="2")),
        "num_layers",
    ),
    (
        "gpt2",
        "num_heads beyond the attention",
        lambda a: _manifest(a, lambda m: m["model"].update(num_heads=7)),
        "attention",
    ),
    (
        "lstm",
        "more prompt tokens than tokens",
        lambda a: _manifest(a, lambda m: m.update(prompt_tokens=10**6)),
        "prompt_tokens",
    ),
    ("lstm", "manifest an array", _set("manifest", lambda a: np.array([str(a[()])])), "manifest"),
]


def _write(arrays: dict[str, np.ndarray], path: Path) -> Path:
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "run,what,corrupt,key", CORRUPTIONS, ids=[f"{c[0]}-{c[1]}".replace(" ", "-") for c in CORRUPTIONS]
)
def test_each_corruption_is_one_line_naming_the_key(runs, tmp_path, capsys, run, what, corrupt, key):
    arrays = runs(run)
    Trace.from_arrays(dict(arrays))  # the run itself is a consistent trace
    corrupt(arrays)
    path = _write(arrays, tmp_path / "bad.memviz")

    with pytest.raises(MemvizError, match=f"'?{key}'?") as raised:
        Trace.load(path)
    assert "\n" not in str(raised.value)

    capsys.readouterr()  # what building the model printed
    code = main(["export", "--trace", str(path), "--all", "--format", "png", "--out", str(tmp_path / "figs")])
    captured = capsys.readouterr()
    assert code == 2, (what, captured.err)
    line = _one_error_line(captured.err)
    assert line.startswith("memviz: error: ") and key in line, line
    assert not (tmp_path / "figs").exists() or not any((tmp_path / "figs").iterdir())


def test_a_consistent_run_still_exports(runs, tmp_path, capsys):
    """The checks refuse corruptions, not real runs: both runs open and export every panel."""
    for name in ("lstm", "gpt2"):
        path = _write(runs(name), tmp_path / f"{name}.memviz")
        out = tmp_path / name
        assert main(["export", "--trace", str(path), "--all", "--format", "png", "--out", str(out)]) == 0
        assert len(list(out.glob("*.png"))) >= 2
    capsys.readouterr()


def _declaring(path: Path, arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> Path:
    """An npz like savez writes, whose member `key` declares `shape` in its header but holds the
    original data (what a 3 MB file claiming a 3 GB array is)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                if name == key:
                    header = {"descr": np.lib.format.dtype_to_descr(value.dtype), "fortran_order": False}
                    np.lib.format.write_array_header_1_0(member, {**header, "shape": shape})
                    member.write(np.ascontiguousarray(value).tobytes())
                else:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    return path


# Peak resident memory of this process image (VmHWM is reset at exec; ru_maxrss is not on Linux).
PEAK_MB = "print([int(l.split()[1]) // 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"


def _peak_rss_of_export(path: Path, out: Path) -> tuple[int, str, int]:
    """(exit code, stderr, peak resident MB) of `memviz export` in a process of its own."""
    script = (
        "import sys\n"
        "from memviz.cli import main\n"
        f"code = main(['export', '--trace', {str(path)!r}, '--all', '--format', 'png', '--out', {str(out)!r}])\n"
        f"{PEAK_MB}\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    return done.returncode, done.stderr, int(done.stdout.strip().splitlines()[-1])


def test_a_declared_3gb_array_is_refused_from_its_header(runs, tmp_path):
    arrays = runs("lstm")
    arrays["hidden"] = np.random.default_rng(0).standard_normal((3 * 2**20 // 4,)).astype(np.float32)
    T = len(arrays["token_ids"])
    declared = (T, 2, 3_100_000_000 // (4 * 2 * T))  # 3.1 GB of float32
    path = _declaring(tmp_path / "liar.memviz", arrays, "hidden", declared)
    assert path.stat().st_size < 4 * 2**20
    code, err, peak_mb = _peak_rss_of_export(path, tmp_path / "figs")
    assert code == 2, err
    line = _one_error_line(err)
    assert "'hidden'" in line and "GB" in line
    assert peak_mb < 1000, f"{peak_mb} MB used to refuse a 3 MB file"


def test_a_real_deflated_array_beyond_the_bound_is_refused_before_it_is_read(runs, tmp_path):
    """Zeros deflate ~1000x: a 0.5 MB file can honestly hold 512 MB. The bound relative to the file's
    size refuses it from the headers (and the manifest's width check would too)."""
    arrays = runs("lstm")
    T = len(arrays["token_ids"])
    path = tmp_path / "zeros.memviz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
        with archive.open("extra_zeros.npy", "w", force_zip64=True) as member:
            n = 512 * 2**20 // 4 // T
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f4", "fortran_order": False, "shape": (T, n)}
            )
            chunk = bytes(2**22)
            for _ in range(T * n * 4 // len(chunk)):
                member.write(chunk)
            member.write(bytes(T * n * 4 % len(chunk)))
    assert path.stat().st_size < 2**20
    code, err, peak_mb = _peak_rss_of_export(path, tmp_path / "figs")
    assert code == 2, err
    assert "declare" in _one_error_line(err)
    assert peak_mb < 400, (peak_mb, err)


def test_a_member_that_is_not_an_array_is_refused(runs, tmp_path):
    path = _write(runs("lstm"), tmp_path / "t.memviz")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(MemvizError, match="'notes.txt'"):
        Trace.load(path)


def test_gui_trace_refuses_a_malformed_trace_in_one_line(runs, tmp_path):
    arrays = runs("lstm")
    _manifest(arrays, lambda m: [m])
    path = _write(arrays, tmp_path / "bad.memviz")
    done = subprocess.run(
        [sys.executable, "-m", "memviz", "gui", "--trace", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert done.returncode == 2, done.stderr
    assert "manifest" in _one_error_line(done.stderr)


def test_file_open_shows_the_error_and_keeps_the_run(runs, tmp_path, make_window, monkeypatch):
    import memviz.ui.window_files as window_files

    arrays = runs("gpt2")
    arrays["attention"] = arrays["attention"][:-1]
    path = _write(arrays, tmp_path / "bad.memviz")
    window = make_window()
    before = window.trace
    monkeypatch.setattr(window_files.QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    window.open_trace_dialog()
    box = window.error_box
    assert box is not None and box.isVisible()
    assert "'attention'" in box.informativeText() and "\n" not in box.informativeText()
    assert window.trace is before
    box.close()


def test_memory_usage_probe_measures_something():
    """The peak-memory probe above is real: a process that allocates 300 MB reports at least that,
    one that does not reports far less."""
    for size, low, high in ((300, 300, 10_000), (0, 0, 200)):
        script = f"import numpy; a = numpy.ones({size} * 2**20 // 8)\n{PEAK_MB}"
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert low <= int(done.stdout) < high, done.stdout
