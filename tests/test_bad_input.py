"""Bad input that used to get through the command line (issue 13, items 10, 14, 16).

Every case runs the real CLI: one line `memviz: error: ...` on stderr, exit status 2, nothing
replaced or left behind, and (for option values) no model loaded.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import resource
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest

from memviz.cli import main
from memviz.core.trace import Trace

REPO = Path(__file__).resolve().parent.parent
TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1"


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> str:
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("memviz: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]
    return lines[0]


def memviz_process(*args, timeout: float = 120, preexec_fn=None, env: dict | None = None, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "memviz", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
        **kw,
    )


@pytest.fixture(scope="module")
def good_trace(tmp_path_factory, lstm_dir) -> Path:
    out = tmp_path_factory.mktemp("good") / "good.memviz"
    assert main(["trace", "--model", str(lstm_dir), "--text", TEXT, "--out", str(out)]) == 0
    return out


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any attempt to load a model fails the test (exit 1, not the expected 2)."""
    import memviz.backends.registry as registry

    def refuse(spec):
        raise AssertionError(f"a model was loaded ({spec}) before the bad option was refused")

    monkeypatch.setattr(registry, "load_backend", refuse)


def folder_listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- item 14: --out is a new path or a regular file, never a device or a FIFO ---------------------


def device_like_dev_full(tmp_path: Path) -> Path:
    """A character device with /dev/full's numbers, in tmp_path when we may make one (root);
    else /dev/full itself (which a non-root user cannot replace anyway)."""
    if os.geteuid() == 0:
        node = tmp_path / "full"
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        return node
    return Path("/dev/full")


def test_trace_out_device_node_is_refused_not_replaced(lstm_dir, tmp_path, capsys):
    node = device_like_dev_full(tmp_path)
    code, _, err = run_cli(capsys, "trace", "--model", lstm_dir, "--text", TEXT, "--out", node)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("memviz: error: --out")
    assert stat.S_ISCHR(os.stat(node).st_mode), "the device node was replaced"
    if node.parent == tmp_path:
        assert "not a regular file" in err
        assert folder_listing(tmp_path) == ["full"], "a temporary file was left behind"


def test_trace_out_fifo_is_refused_not_replaced(lstm_dir, tmp_path, capsys, no_model_loads):
    fifo = tmp_path / "pipe.memviz"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, "trace", "--model", lstm_dir, "--text", TEXT, "--out", fifo)
    assert_one_line_error(code, err, "FIFO", "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert folder_listing(tmp_path) == ["pipe.memviz"]


def test_trace_out_link_to_a_device_is_refused(lstm_dir, tmp_path, capsys, no_model_loads):
    link = tmp_path / "link.memviz"
    link.symlink_to("/dev/null")
    code, _, err = run_cli(capsys, "trace", "--model", lstm_dir, "--text", TEXT, "--out", link)
    assert_one_line_error(code, err, "device")
    assert link.is_symlink() and os.readlink(link) == "/dev/null"


@pytest.mark.parametrize("fmt", ["png", "csv"])
def test_export_out_fifo_is_refused_without_blocking(good_trace, tmp_path, fmt):
    fifo = tmp_path / f"pipe.{fmt}"
    os.mkfifo(fifo)
    args = ["--panel", "gates"] if fmt == "png" else ["--series", "unit"]
    began = time.monotonic()
    done = memviz_process("export", "--trace", good_trace, *args, "--out", fifo, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()] and "FIFO" in done.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert folder_listing(tmp_path) == [fifo.name]
    assert time.monotonic() - began < 60


def test_export_out_device_is_refused(good_trace, tmp_path, capsys):
    node = device_like_dev_full(tmp_path)
    code, _, err = run_cli(
        capsys, "export", "--trace", good_trace, "--series", "unit", "--format", "csv", "--out", node
    )
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "--out" in err
    assert stat.S_ISCHR(os.stat(node).st_mode)


# -- item 14: a failed write leaves the previous file as it was, and no temporary file -----------


def test_trace_full_disk_keeps_the_previous_file(lstm_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run.memviz"
    assert main(["trace", "--model", str(lstm_dir), "--text", "first run", "--out", str(out)]) == 0
    capsys.readouterr()
    before = out.read_bytes()

    def full_disk(handle, **arrays):  # half a file written, then the disk is full
        handle.write(b"PK\x03\x04" + b"\0" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez_compressed", full_disk)
    code, _, err = run_cli(capsys, "trace", "--model", lstm_dir, "--text", TEXT, "--out", out)
    assert_one_line_error(code, err, str(out), "no space left on device")
    assert out.read_bytes() == before
    assert folder_listing(tmp_path) == ["run.memviz"]


def _file_size_limit(limit: int):
    """For a child process: writes past `limit` bytes fail with EFBIG (a real failed write,
    as on a full disk) instead of killing the process with SIGXFSZ."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


FAILED_WRITES = {
    "trace": ("trace", "--model", "{lstm}", "--text", TEXT * 3, "--out", "{out}.memviz"),
    "png": ("export", "--trace", "{trace}", "--panel", "gates", "--out", "{out}.png"),
    "svg": ("export", "--trace", "{trace}", "--panel", "gates", "--out", "{out}.svg"),
    "csv": ("export", "--trace", "{trace}", "--series", "unit", "--out", "{out}.csv"),
}


def _failed_write(
    kind: str, lstm_dir, good_trace, tmp_path
) -> tuple[subprocess.CompletedProcess, Path, bytes]:
    args = [a.format(lstm=lstm_dir, trace=good_trace, out=tmp_path / "result") for a in FAILED_WRITES[kind]]
    out = Path(args[-1])
    previous = b"the previous good file\n"
    out.write_bytes(previous)
    return memviz_process(*args, preexec_fn=_file_size_limit(2048), timeout=180), out, previous


@pytest.mark.parametrize("kind", list(FAILED_WRITES))
def test_a_failed_write_keeps_the_previous_file(lstm_dir, good_trace, tmp_path, kind):
    done, out, previous = _failed_write(kind, lstm_dir, good_trace, tmp_path)
    assert done.returncode in (1, 2), done.stderr
    assert done.stderr.splitlines()[-1].startswith("memviz: error: "), done.stderr
    assert out.read_bytes() == previous, "the previous file was replaced by half a file"
    assert folder_listing(tmp_path) == [out.name], "a temporary file was left behind"


@pytest.mark.parametrize("kind", ["trace", "csv", "png", "svg"])
def test_a_failed_write_is_one_clear_line(lstm_dir, good_trace, tmp_path, kind):
    done, out, _ = _failed_write(kind, lstm_dir, good_trace, tmp_path)
    # a trace's run goes to disk as it is read (memviz.core.run_folder): 2 KB a file stops the run
    # itself, before --out is written
    expected = "cannot write the run (File too large)" if kind == "trace" else f"{out}: cannot write"
    assert_one_line_error(done.returncode, done.stderr, expected)


def test_export_write_is_still_a_rename_when_it_works(good_trace, tmp_path, capsys):
    out = tmp_path / "unit.csv"
    out.write_text("old\n")
    code, stdout, err = run_cli(capsys, "export", "--trace", good_trace, "--series", "unit", "--out", out)
    assert code == 0, err
    assert stdout.strip() == f"wrote {out}"
    assert out.read_text().startswith("step,")
    assert folder_listing(tmp_path) == ["unit.csv"]


# -- item 14: numeric options are bounded before anything loads ----------------------------------

BAD_MODEL_OPTIONS = [
    ("--seed", "-1"),
    ("--seed", str(2**32)),
    ("--seed", "1.5"),
    ("--generate", "1000000000"),
    ("--generate", "-1"),
    ("--temperature", "inf"),
    ("--temperature", "nan"),
    ("--temperature", "1e-300"),
    ("--temperature", "-1"),
    ("--top-k", "-1"),
    ("--top-k", "1000000000000"),
    ("--top-p", "nan"),
    ("--top-p", "0"),
    ("--top-p", "1.5"),
    ("--knn-lambda", "nan"),
    ("--knn-lambda", "2"),
    ("--knn-lambda", "-inf"),
    ("--knn-k", "1000000000"),
    ("--knn-k", "0"),
    ("--knn-temperature", "0"),
    ("--knn-temperature", "inf"),
    ("--knn-temperature", "nan"),
]


@pytest.mark.parametrize("command", ["trace", "export"])
@pytest.mark.parametrize("option, value", BAD_MODEL_OPTIONS)
def test_bad_model_option_is_one_line_before_the_model_loads(
    lstm_dir, tmp_path, capsys, no_model_loads, command, option, value
):
    out = tmp_path / ("o.memviz" if command == "trace" else "o.png")
    extra = ["--panel", "gates"] if command == "export" else []
    code, _, err = run_cli(
        capsys, command, "--model", lstm_dir, "--text", TEXT, *extra, f"{option}={value}", "--out", out
    )
    assert_one_line_error(code, err, option)
    assert folder_listing(tmp_path) == []


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--scale", "1e6"], "--scale"),
        (["--scale", "100"], "--scale"),
        (["--scale", "0.1"], "--scale"),
        (["--scale", "nan"], "--scale"),
        (["--scale", "inf"], "--scale"),
        (["--scale", "8", "--size", "10000x10000"], "pixels"),
        (["--scale", "4", "--size", "5000x5000"], "pixels"),
        (["--format", "gif", "--scale", "4"], "each frame"),
        (["--size", "nanxnan"], "--size"),
        (["--size", "0x0"], "--size"),
        (["--size", "1e9x1e9"], "--size"),
        (["--step", "-1"], "--step"),
        (["--layer", "-1"], "--layer"),
        (["--head", "-2"], "--head"),
        (["--unit", "nan"], "--unit"),
        (["--format", "gif", "--from", "-1"], "--from"),
        (["--format", "gif", "--to", "1e3"], "--to"),
        (["--format", "gif", "--fps", "0"], "--fps"),
        (["--format", "gif", "--fps", "inf"], "--fps"),
        (["--format", "gif", "--fps", "1e9"], "--fps"),
    ],
)
def test_bad_export_option_is_one_line_and_writes_nothing(
    good_trace, tmp_path, capsys, monkeypatch, args, fragment
):
    loaded = []
    monkeypatch.setattr(Trace, "load", classmethod(lambda cls, path: loaded.append(path)))
    fmt = "gif" if "gif" in args else "png"
    if "--format" not in args:
        args = ["--format", fmt, *args]
    out = tmp_path / f"figure.{fmt}"
    code, _, err = run_cli(capsys, "export", "--trace", good_trace, "--panel", "gates", *args, "--out", out)
    line = assert_one_line_error(code, err, fragment)
    assert "QPainter" not in line and "OverflowError" not in line
    assert loaded == [], "the trace was read before the option was checked"
    assert folder_listing(tmp_path) == []


def test_largest_allowed_seed_is_accepted(lstm_dir, tmp_path, capsys):
    out = tmp_path / "seeded.memviz"
    seed = 2**32 - 1
    code, _, err = run_cli(
        capsys, "trace", "--model", lstm_dir, "--text", "abc", "--generate", "3", "--seed", seed, "--out", out
    )
    assert code == 0, err
    assert Trace.load(out).sampling["seed"] == seed


@pytest.mark.parametrize("value", ["0", "-5", "1000000000000", "nan", "many"])
def test_memory_add_batch_size_is_bounded(lstm_dir, tmp_path, capsys, no_model_loads, value):
    doc = tmp_path / "doc.txt"
    doc.write_text(TEXT)
    code, _, err = run_cli(
        capsys,
        "memory",
        "add",
        "--store",
        tmp_path / "m.sqlite",
        "--model",
        lstm_dir,
        f"--batch-size={value}",
        doc,
    )
    assert_one_line_error(code, err, "--batch-size")
    assert folder_listing(tmp_path) == ["doc.txt"]


@pytest.mark.parametrize(
    "option, value",
    [
        ("--lr", "nan"),
        ("--minutes", "inf"),
        ("--hidden", "100000000"),
        ("--seed", "-1"),
        ("--copy-fraction", "2"),
    ],
)
def test_train_options_are_bounded(tmp_path, capsys, option, value):
    code, _, err = run_cli(capsys, "train", "lstm", "--out", tmp_path / "m", f"{option}={value}")
    assert_one_line_error(code, err, option)
    assert folder_listing(tmp_path) == []


def test_knn_k_is_capped_at_the_store_size(lstm_dir, tmp_path, capsys):
    doc = tmp_path / "doc.txt"
    doc.write_text("abcdefghij")  # 10 characters: 9 (key, next token) pairs
    store = tmp_path / "small.sqlite"
    assert main(["memory", "add", "--quiet", "--store", str(store), "--model", str(lstm_dir), str(doc)]) == 0
    capsys.readouterr()
    out = tmp_path / "run.memviz"
    code, _, err = run_cli(
        capsys,
        "trace",
        "--model",
        lstm_dir,
        "--text",
        "abc",
        "--memory",
        store,
        "--knn-k",
        "4000",
        "--out",
        out,
    )
    assert code == 0, err
    lines = err.splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("memviz: warning: --knn-k 4000") and "9 entries" in lines[0]
    )
    trace = Trace.load(out)
    assert trace.array("memory_ids").shape == (3, 9)
    assert trace.memory["k"] == 9


def test_options_bound_matches_the_run_limit():
    from memviz.core.session import MAX_TOKENS
    from memviz.options import MAX_GENERATE

    assert MAX_GENERATE == MAX_TOKENS


# -- item 16: HF_HUB_OFFLINE as huggingface_hub reads it -----------------------------------------


@pytest.mark.parametrize(
    "value, offline",
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("ON", True),
        ("on", True),
        ("yes", True),
        ("YES", True),
        ("0", False),
        ("false", False),
        ("off", False),
        ("no", False),
        ("", False),
    ],
)
def test_hub_offline_reads_every_value_the_hub_honours(monkeypatch, value, offline):
    from memviz.backends.hub_env import hub_offline

    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline() is offline
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", value)  # transformers' own name, read when the first is unset
    assert hub_offline() is offline


@pytest.mark.parametrize("value", ["true", "ON", "yes"])
def test_offline_hub_is_not_contacted(monkeypatch, tmp_path, capsys, value):
    import socket

    contacted = []

    def no_network(*args, **kwargs):
        contacted.append(args)
        raise OSError("network used")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    code, _, err = run_cli(
        capsys, "trace", "--model", "memviz-tests/not-a-model", "--text", "a", "--out", tmp_path / "o.memviz"
    )
    assert_one_line_error(code, err, "offline")
    assert contacted == [], "the hub's host was looked up although HF_HUB_OFFLINE is set"


# -- item 16: memviz eval ------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["lstm", "gpt2"])
def test_eval_of_a_one_token_text_is_refused(lstm_dir, gpt2_dir, tmp_path, capsys, which):
    text_file = tmp_path / "one.txt"
    text_file.write_text("a")
    model = lstm_dir if which == "lstm" else gpt2_dir
    code, out, err = run_cli(capsys, "eval", "--model", model, "--text-file", text_file)
    assert_one_line_error(code, err, str(text_file), "nothing to predict")
    assert out == ""


def test_eval_prints_the_text_files_warnings(lstm_dir, tmp_path, capsys):
    text_file = tmp_path / "latin1.txt"
    text_file.write_bytes("caf\u00e9 na\u00efve fox jumps".encode("latin-1"))
    code, out, err = run_cli(capsys, "eval", "--model", lstm_dir, "--text-file", text_file, "--quiet")
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("memviz: warning: ") and "UTF-8" in lines[0]
    assert "bits per character" in out


def test_eval_reads_the_file_before_loading_the_model(tmp_path, capsys, no_model_loads):
    code, _, err = run_cli(capsys, "eval", "--model", "x", "--text-file", tmp_path / "absent.txt")
    assert_one_line_error(code, err, "no such file")


@pytest.mark.parametrize("which", ["lstm", "gpt2"])
def test_eval_progress_counts_every_predicted_token(lstm_dir, gpt2_dir, which, sample_text):
    from memviz.backends.registry import load_backend
    from memviz.train.evaluate import bits_per_char, gpt2_bits_per_char, lstm_bits_per_char

    backend = load_backend(str(lstm_dir if which == "lstm" else gpt2_dir))
    text = sample_text * 3
    calls: list[tuple[int, int]] = []
    if which == "lstm":
        n = len(backend.encode(text).ids)
        value = lstm_bits_per_char(backend, text, chunk=50, progress=lambda d, t: calls.append((d, t)))
    else:
        n = len(backend.tokenizer(text)["input_ids"])
        assert n > backend.model.config.n_positions, "the text should need several windows"
        value = gpt2_bits_per_char(backend, text, progress=lambda d, t: calls.append((d, t)))
    assert len(calls) > 1
    assert calls[-1] == (n - 1, n - 1)
    assert all(t == n - 1 for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert value == pytest.approx(bits_per_char(backend, text))  # the progress does not change the number


def _eval_on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run `memviz eval` with stderr on a pseudo-terminal; (exit status, what the terminal showed)."""
    master, slave = pty.openpty()
    # a real terminal has a size; a fresh pty is 0 x 0, where tqdm draws an empty bar
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "memviz", "eval", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    proc.stdout.read()
    os.close(master)
    return proc.wait(timeout=60), shown.decode(errors="replace")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_eval_shows_progress_on_a_terminal_only(lstm_dir, tmp_path):
    text_file = tmp_path / "long.txt"
    text_file.write_text(TEXT * 200)
    code, shown = _eval_on_a_terminal(["--model", str(lstm_dir), "--text-file", str(text_file)])
    assert code == 0, shown
    assert "eval" in shown and "100%" in shown and "tokens" in shown, shown
    code, shown = _eval_on_a_terminal(["--model", str(lstm_dir), "--text-file", str(text_file), "--quiet"])
    assert code == 0 and shown == "", shown
    done = memviz_process("eval", "--model", lstm_dir, "--text-file", text_file)  # stderr is a pipe
    assert done.returncode == 0 and done.stderr == "", done.stderr


# -- item 10: a file that is not a trace says so -------------------------------------------------


def test_export_of_a_program_says_not_a_trace(tmp_path, capsys):
    program = tmp_path / "ls"
    source = Path("/bin/ls")
    if source.is_file():
        shutil.copyfile(source, program)
    else:
        program.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 8)
    code, _, err = run_cli(
        capsys, "export", "--trace", program, "--panel", "gates", "--out", tmp_path / "f.png"
    )
    line = assert_one_line_error(code, err, "not a memviz trace")
    assert "pickle" not in line


@pytest.mark.parametrize("kind", ["npy", "npz-without-manifest", "text"])
def test_other_numpy_files_are_not_traces(tmp_path, capsys, kind):
    path = tmp_path / "data.memviz"
    if kind == "npy":
        with path.open("wb") as handle:
            np.save(handle, np.arange(10))
    elif kind == "npz-without-manifest":
        obj = np.empty(1, dtype=object)  # even with an object array: no manifest, not a trace
        with path.open("wb") as handle:
            np.savez(handle, token_ids=np.arange(3), other=obj)
    else:
        path.write_text("hello\n")
    code, _, err = run_cli(capsys, "export", "--trace", path, "--panel", "gates", "--out", tmp_path / "f.png")
    line = assert_one_line_error(code, err, "not a memviz trace")
    assert "pickle" not in line


def test_npz_with_object_arrays_still_says_pickled(tmp_path, capsys):
    path = tmp_path / "evil.memviz"
    obj = np.empty(1, dtype=object)
    obj[0] = {"a": 1}
    with path.open("wb") as handle:
        np.savez(
            handle,
            manifest=np.array(json.dumps({"format_version": 1})),
            token_ids=np.array([1]),
            token_text=np.array(["a"]),
            generated=np.array([False]),
            topk_ids=obj,
            topk_probs=np.array([[1.0]], dtype=np.float32),
        )
    code, _, err = run_cli(capsys, "export", "--trace", path, "--panel", "gates", "--out", tmp_path / "f.png")
    assert_one_line_error(code, err, "pickled objects")
