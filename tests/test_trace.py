"""The Trace and its `.memviz` file (format 1): round trips, exact paths, never unpickling."""

from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memviz.core.trace import FORMAT_VERSION, StepRecord, Trace
from memviz.errors import MemvizError
from memviz.memory.store import MemoryRecord

DATA = Path(__file__).parent / "data"

MODEL = {
    "name": "m",
    "source": "/x/m",
    "architecture": "lstm",
    "num_layers": 2,
    "hidden_size": 3,
    "num_heads": 0,
    "vocab_size": 50,
}
SAMPLING = {"strategy": "sample", "temperature": 0.7, "top_k": 5, "top_p": 0.9, "seed": 11}


@st.composite
def traces(draw):
    arch = draw(st.sampled_from(["lstm", "gpt2"]))
    T = draw(st.integers(1, 12))
    L, H, A, K = (
        draw(st.integers(1, 3)),
        draw(st.integers(1, 4)),
        draw(st.integers(1, 3)),
        draw(st.integers(1, 12)),
    )
    with_memory = draw(st.booleans())
    k = draw(st.integers(1, 4))
    attention_dtype = draw(st.sampled_from([np.float32, np.float16]))
    texts = draw(st.lists(st.text(max_size=6), min_size=T, max_size=T))
    generated = draw(st.lists(st.booleans(), min_size=T, max_size=T))
    # token ids inside the manifest's vocabulary: a trace with others is inconsistent (refused)
    ids = draw(st.lists(st.integers(0, MODEL["vocab_size"] - 1), min_size=T, max_size=T))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    model = dict(MODEL, architecture=arch, num_layers=L, hidden_size=H, num_heads=A if arch == "gpt2" else 0)
    memory = (
        {"store": "s.db", "entries": 3, "k": k, "lambda": 0.25, "temperature": 1.0} if with_memory else None
    )
    trace = Trace(
        model,
        sampling=SAMPLING,
        memory=memory,
        prompt_tokens=draw(st.integers(0, T)),
        attention_dtype=attention_dtype,
    )
    for t in range(T):
        probs = np.sort(rng.random(K).astype(np.float32))[::-1]
        internals = {}
        if arch == "lstm":
            internals = {
                "gates": rng.random((L, 4, H), dtype=np.float32),
                "cell": rng.standard_normal((L, H)).astype(np.float32),
                "hidden": rng.standard_normal((L, H)).astype(np.float32),
            }
        else:
            row = rng.random((L, A, t + 1))
            internals = {"attention_row": (row / row.sum(-1, keepdims=True)).astype(np.float32)}
        mem = {}
        if with_memory:
            mem = {
                "memory_ids": rng.integers(-1, 100, k).astype(np.int64),
                "memory_scores": -rng.random(k).astype(np.float32),
            }
        if with_memory:  # as the Session saves them: once per retrieved id, any text
            trace.add_memory_records(
                MemoryRecord(int(i), int(i) + 1, texts[t], 0, f"doc {i}.txt", t, texts[t] + "\0", (0, 1))
                for i in mem["memory_ids"]
                if i >= 0
            )
        trace.append(
            StepRecord(ids[t], texts[t], generated[t], rng.integers(0, 50, K), probs, internals, mem)
        )
    return trace


def assert_same(a: Trace, b: Trace) -> None:
    assert len(a) == len(b)
    assert a.token_ids == b.token_ids
    assert a.token_text == b.token_text
    assert a.generated == b.generated
    assert a.manifest() == b.manifest()
    assert set(a.column_names) == set(b.column_names)
    for key in a.column_names:
        np.testing.assert_array_equal(a.array(key), b.array(key))
        assert a.array(key).dtype == b.array(key).dtype
    assert a.memory_records == b.memory_records
    assert a.has("attention") == b.has("attention")
    if a.has("attention"):
        np.testing.assert_array_equal(a.attention_tensor(), b.attention_tensor())
        for t in range(len(a)):
            np.testing.assert_array_equal(a.attention_at(t), b.attention_at(t))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces())
def test_round_trip(trace):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.memviz"
        assert trace.save(path) == path
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["run.memviz"]  # no .npz, no temp files
        loaded = Trace.load(path)
        assert_same(trace, loaded)

        # The file itself, read with plain numpy and no pickle, is format 1 as DESIGN.md says.
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    T = len(trace)
    manifest = json.loads(str(arrays["manifest"][()]))
    assert arrays["manifest"].ndim == 0
    assert manifest["format_version"] == FORMAT_VERSION == 1
    assert manifest["model"] == trace.model and manifest["sampling"] == SAMPLING
    assert manifest["memory"] == trace.memory and manifest["prompt_tokens"] == trace.prompt_tokens
    assert {"memviz_version", "model", "sampling", "memory", "prompt_tokens"} <= set(manifest)
    assert arrays["token_ids"].dtype.kind == "i" and arrays["token_ids"].tolist() == trace.token_ids
    assert arrays["token_text"].dtype.kind == "U"
    assert arrays["token_text"].tolist() == [
        t.rstrip("\0") for t in trace.token_text
    ]  # numpy drops trailing NULs
    assert arrays["generated"].dtype == bool and arrays["generated"].tolist() == trace.generated
    assert arrays["topk_ids"].dtype.kind == "i" and arrays["topk_probs"].dtype == np.float32
    assert arrays["topk_ids"].shape == arrays["topk_probs"].shape and len(arrays["topk_ids"]) == T
    if trace.architecture == "lstm":
        L, H = trace.model["num_layers"], trace.model["hidden_size"]
        assert arrays["gates"].shape == (T, L, 4, H) and arrays["gates"].dtype == np.float32
        assert arrays["cell"].shape == arrays["hidden"].shape == (T, L, H)
        assert "attention" not in arrays
    else:
        L, A = trace.model["num_layers"], trace.model["num_heads"]
        att = arrays["attention"]
        assert att.shape == (L, A, T, T) and att.dtype in (np.float16, np.float32)
        assert not np.triu(att, 1).any()  # zero above the diagonal
        np.testing.assert_allclose(att.sum(-1), 1.0, atol=2e-2 if att.dtype == np.float16 else 1e-5)
        assert "gates" not in arrays
    if trace.memory:
        assert arrays["memory_ids"].dtype == np.int64 and arrays["memory_scores"].dtype == np.float32
        assert arrays["memory_ids"].shape == (T, trace.memory["k"])
    if trace.memory_records:  # one 0-d JSON string, readable without memviz
        assert arrays["memory_records"].ndim == 0
        saved = json.loads(str(arrays["memory_records"][()]))
        assert {int(i) for i in saved} == set(trace.memory_records)
        for i, fields in saved.items():
            assert MemoryRecord(int(i), **{**fields, "highlight": tuple(fields["highlight"])}) == (
                trace.memory_record(int(i))
            )
    else:
        assert "memory_records" not in arrays


@settings(max_examples=25, deadline=None)
@given(texts=st.lists(st.text(min_size=0, max_size=8), min_size=1, max_size=20))
def test_token_text_survives_any_text(texts):
    """Any token text, including whitespace, empty strings and NUL characters, comes back as it was."""
    trace = Trace(MODEL)
    for i, text in enumerate(texts):
        trace.append(StepRecord(i, text, False, np.arange(3), np.full(3, 0.1, np.float32)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.memviz"
        trace.save(path)
        assert Trace.load(path).token_text == texts


@pytest.mark.parametrize("name", ["run", "run.memviz", "run.npz", "trace.data"])
def test_written_at_exactly_the_given_path(tmp_path, name):
    trace = Trace(MODEL)
    trace.append(StepRecord(1, "a", False, np.arange(3), np.full(3, 0.3, np.float32)))
    trace.save(tmp_path / name)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert Trace.load(tmp_path / name).token_text == ["a"]


def test_save_overwrites_and_refuses_bad_paths(tmp_path):
    trace = Trace(MODEL)
    trace.append(StepRecord(1, "a", False, np.arange(3), np.full(3, 0.3, np.float32)))
    path = tmp_path / "x.memviz"
    path.write_text("old")
    trace.save(path)
    assert Trace.load(path).token_ids == [1]
    with pytest.raises(MemvizError, match="folder"):
        trace.save(tmp_path)
    with pytest.raises(MemvizError, match="does not exist"):
        trace.save(tmp_path / "missing" / "x.memviz")


def test_empty_trace_round_trips(tmp_path):
    trace = Trace(MODEL)
    trace.save(tmp_path / "empty.memviz")
    loaded = Trace.load(tmp_path / "empty.memviz")
    assert len(loaded) == 0 and loaded.manifest() == trace.manifest()


class _Marker:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_pickled_object_array_is_refused(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.memviz"
    obj = np.empty(1, dtype=object)
    obj[0] = _Marker(marker)
    with path.open("wb") as handle:
        np.savez(
            handle,
            manifest=np.array(json.dumps({"format_version": 1, "model": MODEL})),
            token_ids=np.array([1]),
            token_text=np.array(["a"]),
            generated=np.array([False]),
            topk_ids=obj,
            topk_probs=np.array([[1.0]], dtype=np.float32),
        )
    assert not marker.exists()
    with pytest.raises(MemvizError, match="pickle"):
        Trace.load(path)
    assert not marker.exists()
    # Sanity: the marker does work when something unpickles it.
    pickle.loads(pickle.dumps(_Marker(marker))).close()
    assert marker.exists()


def test_not_a_trace_is_refused(tmp_path):
    garbage = tmp_path / "g.memviz"
    garbage.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(MemvizError):
        Trace.load(garbage)
    with pytest.raises(MemvizError, match="no such"):
        Trace.load(tmp_path / "absent.memviz")
    partial = tmp_path / "p.memviz"
    with partial.open("wb") as handle:
        np.savez(handle, manifest=np.array(json.dumps({"format_version": 1})))
    with pytest.raises(MemvizError, match="missing"):
        Trace.load(partial)
    future = tmp_path / "f.memviz"
    with future.open("wb") as handle:
        np.savez(
            handle,
            manifest=np.array(json.dumps({"format_version": 2})),
            token_ids=np.array([1]),
            token_text=np.array(["a"]),
            generated=np.array([False]),
            topk_ids=np.array([[1]]),
            topk_probs=np.array([[1.0]], dtype=np.float32),
        )
    with pytest.raises(MemvizError, match="format"):
        Trace.load(future)


def test_attention_views(tmp_path):
    trace = Trace(dict(MODEL, architecture="gpt2", num_heads=1, num_layers=1))
    rows = [np.array([[[1.0]]]), np.array([[[0.25, 0.75]]]), np.array([[[0.5, 0.0, 0.5]]])]
    for t, row in enumerate(rows):
        trace.append(
            StepRecord(t, str(t), False, np.arange(2), np.full(2, 0.5, np.float32), {"attention_row": row})
        )
    expected = np.array([[1, 0, 0], [0.25, 0.75, 0], [0.5, 0, 0.5]], dtype=np.float32)
    np.testing.assert_array_equal(trace.attention_matrix(0, 0), expected)
    np.testing.assert_array_equal(trace.attention_matrix(0, 0, upto=2), expected[:2, :2])
    np.testing.assert_array_equal(trace.attention_tensor()[0, 0], expected)
    # Expected distance back: (0 + 0.25*1 + (0.5*2 + 0.5*0)) / 3
    np.testing.assert_allclose(trace.mean_attention_distance(), [[(0.25 + 1.0) / 3]])


def test_attention_matrix_grows_step_by_step():
    """Read while the run grows (as the panels do): the cached matrix gains rows, never stale ones."""
    rng = np.random.default_rng(0)
    trace = Trace(dict(MODEL, architecture="gpt2", num_heads=2, num_layers=2))
    for t in range(150):  # past the cache's first capacities (64, 128)
        row = rng.random((2, 2, t + 1)).astype(np.float32)
        trace.append(
            StepRecord(t, str(t), False, np.arange(2), np.full(2, 0.5, np.float32), {"attention_row": row})
        )
        if t % 7 == 0 or t > 120:
            dense = trace.attention_tensor()
            np.testing.assert_array_equal(trace.attention_matrix(1, 0), dense[1, 0])
            np.testing.assert_array_equal(
                trace.attention_matrix(1, 0, upto=t // 2 + 1), dense[1, 0, : t // 2 + 1, : t // 2 + 1]
            )
    assert trace.attention_matrix(0, 1).shape == (150, 150)


def test_token_texts_ending_in_nul_survive(tmp_path):
    """numpy's str arrays strip trailing NULs (GPT-2 has a token for byte 0): the trace restores them."""
    texts = ["\0", "a\0\0", " ", "", "\0b", "x"]
    trace = Trace(MODEL)
    for i, text in enumerate(texts):
        trace.append(StepRecord(i, text, False, np.arange(3), np.full(3, 0.1, np.float32)))
    trace.save(tmp_path / "nul.memviz")
    assert Trace.load(tmp_path / "nul.memviz").token_text == texts


def test_candidate_texts_are_saved_so_a_trace_labels_them_without_the_model(tmp_path, lstm_dir):
    from memviz.backends.registry import load_backend
    from memviz.core.session import Session

    backend = load_backend(str(lstm_dir))
    session = Session(backend)
    session.feed("The quick")
    session.run()
    trace = session.trace
    for token_id in trace.array("topk_ids").ravel():
        assert trace.text_of(token_id) == backend.token_text(int(token_id))
    loaded = Trace.load(trace.save(tmp_path / "run.memviz"))
    assert loaded.vocab == trace.vocab and len(loaded.vocab) >= 20


def test_a_format_1_file_from_before_memory_records_still_opens():
    """tests/data/format1-gpt2-memory.memviz was written by memviz before traces kept memory records
    (a synthetic GPT-2-shaped run with a memory: 6 tokens, 2 layers, 3 heads, k = 3, float16)."""
    path = DATA / "format1-gpt2-memory.memviz"
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    assert "memory_records" not in arrays
    trace = Trace.load(path)
    assert len(trace) == trace.steps == 6 and trace.token_text[3] == " fox"
    assert trace.attention_shape == (2, 3)
    np.testing.assert_array_equal(trace.attention_tensor(), arrays["attention"])
    for t in range(6):
        np.testing.assert_array_equal(trace.attention_rows_at(t), arrays["attention"][:, :, t, : t + 1])
    np.testing.assert_array_equal(trace.array("memory_ids"), arrays["memory_ids"])
    assert trace.memory_records == {} and trace.memory_record(int(arrays["memory_ids"][1, 0])) is None
    assert set(trace.column_names) >= {"topk_ids", "topk_probs", "memory_ids", "memory_scores"}


def test_broken_memory_records_are_refused(tmp_path):
    trace = Trace(MODEL, memory={"store": "s", "entries": 1, "k": 1, "lambda": 0.5, "temperature": 1.0})
    trace.append(StepRecord(1, "a", False, np.arange(3), np.full(3, 0.3, np.float32)))
    arrays = trace.to_arrays()
    arrays["memory_records"] = np.array(json.dumps({"3": {"next_token": 1}}))  # fields missing
    with pytest.raises(MemvizError, match="memory_records"):
        Trace.from_arrays(arrays)


def test_a_run_stopped_in_its_prompt_saves_a_file_that_opens(lstm_dir, tmp_path):
    """Cancel after 3 of the prompt's tokens: the file says 3 prompt tokens, and loads."""
    from memviz.backends.registry import load_backend
    from memviz.core.session import Session

    session = Session(load_backend(str(lstm_dir)))
    session.feed("a prompt of many more than three characters")
    for _ in range(3):
        session.step()
    session.cancel()
    assert session.trace.prompt_tokens > 3  # what was queued
    loaded = Trace.load(session.trace.save(tmp_path / "stopped.memviz"))
    assert len(loaded) == 3 and loaded.prompt_tokens == 3
    assert loaded.token_ids == session.trace.token_ids
