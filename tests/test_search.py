"""Pattern search (issue 17 item 4): `memviz search` and memviz.core.search against independent
computations: a brute-force loop over every span with the distance worked out by hand, the states
of a stepped run (recurrent) or of GPT-2's blocks applied one by one (transformer), and a real
SQLite store's documents."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from memviz.cli import main
from memviz.core import search as pattern
from memviz.errors import MemvizError
from memviz.export.data import read_csv_values

REPEAT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n"


# -- the independent computation ------------------------------------------------------------------------
def brute_force(states: np.ndarray, a: int, b: int, top: int, metric: str = "euclidean", threshold=0.3):
    """[(start, distance)]: every span of the query's length not overlapping it, distance by hand,
    nearest first (ties: earlier), each overlapping none ranked before it."""
    n = b - a + 1
    rows = states.tolist()
    scored = []
    for s in range(len(rows) - n + 1):
        if s <= b and s + n - 1 >= a:
            continue
        total = 0.0
        for j in range(n):
            for x, q in zip(rows[s + j], rows[a + j], strict=True):
                if metric == "binary":
                    total += (x > threshold) != (q > threshold)
                else:
                    total += (x - q) ** 2
        scored.append((total if metric == "binary" else math.sqrt(total), s))
    scored.sort()
    chosen: list[tuple[int, float]] = []
    for d, s in scored:
        if len(chosen) == top:
            break
        if all(s + n - 1 < c or s > c + n - 1 for c, _ in chosen):
            chosen.append((s, d))
    return chosen


def gpt2_blocks_by_hand(folder: Path, ids: list[int], layer: int) -> np.ndarray:
    """The residual stream after block `layer`: embeddings, then the blocks applied one by one."""
    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        x = torch.tensor([ids])
        h = model.transformer.wte(x) + model.transformer.wpe(torch.arange(len(ids))[None])
        n = len(ids)
        causal = torch.full((n, n), float("-inf")).triu(1)[None, None]  # no query sees a later key
        for block in model.transformer.h[: layer + 1]:
            out = block(h, attention_mask=causal)
            h = out[0] if isinstance(out, tuple) else out
    return h[0].numpy()


def csv_matches(path: Path) -> list[tuple[str, int, int, float, str]]:
    header, rows = read_csv_values(path)
    assert header == list(
        ("rank", "source", "document_id", "start", "end", "distance", "before", "text", "after")
    )
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    return [(r[1], int(r[3]), int(r[4]), float(r[5]), r[7]) for r in rows]


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lstm(tmp_path_factory, lstm_dir_factory) -> Path:
    return lstm_dir_factory(tmp_path_factory.mktemp("search") / "lstm", layers=2, hidden=24)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory, gpt2_dir_factory) -> Path:
    return gpt2_dir_factory(tmp_path_factory.mktemp("search") / "gpt2", layers=3, embd=32)


@pytest.fixture(scope="module")
def lstm_trace(lstm, run_session, tmp_path_factory) -> tuple[Path, object]:
    trace = run_session(lstm, REPEAT * 3).trace
    path = tmp_path_factory.mktemp("search") / "lstm.memviz"
    trace.save(path)
    return path, trace


@pytest.fixture(scope="module")
def gpt2_trace(gpt2, run_session, tmp_path_factory) -> tuple[Path, object]:
    trace = run_session(gpt2, REPEAT * 2).trace
    path = tmp_path_factory.mktemp("search") / "gpt2.memviz"
    trace.save(path)
    return path, trace


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- the CLI against brute force --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("metric", "units"), [("euclidean", "3,17,20"), ("euclidean", None), ("binary", None)]
)
def test_cli_lstm_top_matches_equal_brute_force(lstm_trace, tmp_path, capsys, metric, units):
    path, trace = lstm_trace
    out = tmp_path / "m.csv"
    argv = ["search", "--trace", str(path), "--layer", "1", "--steps", "75-86", "--top", "6"]
    argv += ["--metric", metric, "--threshold", "0.05", "--csv", str(out)]
    if units:
        argv += ["--units", units]
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0, err
    states = trace.array("hidden")[:, 1, :].astype(np.float64)
    if units:
        states = states[:, [int(u) for u in units.split(",")]]
    expected = brute_force(states, 75, 86, 6, metric, threshold=0.05)
    got = csv_matches(out)
    assert [(start, end) for _, start, end, _, _ in got] == [(s, s + 11) for s, _ in expected]
    np.testing.assert_allclose([d for *_, d, _ in got], [d for _, d in expected], rtol=1e-6, atol=1e-9)
    labels = trace.token_labels
    assert [text for *_, text in got] == ["".join(labels[s : s + 12]) for s, _ in expected]
    assert all(source == "run" for source, *_ in got)
    for rank, (s, _) in enumerate(expected, start=1):  # the printed table says the same
        assert any(line.split()[:3] == [str(rank), "run", f"{s}-{s + 11}"] for line in stdout.splitlines())


def test_lstm_planted_repeat_is_rank_one_at_distance_zero(lstm_trace):
    """Late in the third copy the state has converged: the same text in the second copy is rank 1."""
    _, trace = lstm_trace
    n = len(REPEAT)
    a = 2 * n + 40  # the third copy, 40 characters in
    result = pattern.search(trace, pattern.Query(layer=1, start=a, end=a + 9, top=3))
    best = result.matches[0]
    assert (best.start, best.end) == (n + 40, n + 49)
    assert best.distance < 1e-4
    assert best.text == result.query_text == REPEAT[40:50]
    assert result.matches[1].start == 40  # the first copy next (its state had less text behind it)


def test_gpt2_top_matches_equal_brute_force_over_blocks_by_hand(gpt2, gpt2_trace, tmp_path, capsys):
    path, trace = gpt2_trace
    out = tmp_path / "g.csv"
    for layer in (0, 2):  # a middle block and the last (its raw residual, before the final norm)
        code, _, err = run_cli(
            capsys,
            *("search", "--trace", str(path), "--layer", str(layer), "--steps", "4-7", "--top", "5"),
            *("--model", str(gpt2), "--csv", str(out), "--device", "cpu"),
        )
        assert code == 0, err
        states = gpt2_blocks_by_hand(gpt2, trace.token_ids, layer).astype(np.float64)
        expected = brute_force(states, 4, 7, 5)
        got = csv_matches(out)
        assert [start for _, start, *_ in got] == [s for s, _ in expected]
        np.testing.assert_allclose([m[3] for m in got], [d for _, d in expected], rtol=1e-4, atol=1e-5)


def test_gpt2_planted_repeat_finds_the_other_copy_first(gpt2_trace, gpt2):
    from memviz.backends.registry import load_backend

    _, trace = gpt2_trace
    half = len(trace) // 2
    assert trace.token_ids[:half] == trace.token_ids[half:]  # the same tokens twice
    backend = load_backend(str(gpt2), device="cpu")
    for layer in range(3):
        result = pattern.search(
            trace, pattern.Query(layer=layer, start=half + 3, end=half + 7, top=1), backend
        )
        assert (result.matches[0].start, result.matches[0].end) == (3, 7), layer


def test_layer_states_equal_the_stepped_run(lstm, lstm_trace):
    from memviz.backends.layer_states import layer_states
    from memviz.backends.registry import load_backend

    _, trace = lstm_trace
    backend = load_backend(str(lstm))
    for layer in range(2):
        np.testing.assert_allclose(
            layer_states(backend, trace.token_ids, layer), trace.array("hidden")[:, layer], atol=1e-5
        )


# -- the memory store -------------------------------------------------------------------------------------
def test_store_documents_are_searched_like_the_run(lstm, lstm_trace, run_session, tmp_path, capsys):
    """A real SQLite store holding a document that contains the run's text after other text: the
    query's span is found in it, at the distance a stepped run over the document gives."""
    from memviz.backends.registry import load_backend
    from memviz.memory.store import MemoryStore

    path, trace = lstm_trace
    backend = load_backend(str(lstm))
    other = "x = 1\ndef g(y): return y\n"
    document = other + REPEAT * 2
    store_path = tmp_path / "memory.sqlite"
    with MemoryStore.open(store_path, backend=backend, create=True) as store:
        store.add_document("fox fox fox\n", "short.txt", backend)
        store.add_document(document, "doc.txt", backend)
    out = tmp_path / "m.csv"
    a = 2 * len(REPEAT) + 40
    code, stdout, err = run_cli(
        capsys,
        *("search", "--trace", str(path), "--layer", "1", "--steps", f"{a}-{a + 9}", "--top", "8"),
        *("--memory", str(store_path), "--model", str(lstm), "--csv", str(out)),
    )
    assert code == 0, err
    got = csv_matches(out)
    in_doc = [m for m in got if m[0] == "doc.txt"]
    assert in_doc, got
    where = len(other) + len(REPEAT) + 40  # the second copy in the document
    assert (in_doc[0][1], in_doc[0][2]) == (where, where + 9)
    assert in_doc[0][3] < 1e-4 and in_doc[0][4] == REPEAT[40:50]
    assert "doc 2 doc.txt" in stdout
    # every document match against brute force over the document read by a stepped run
    doc_states = run_session(backend, document).trace.array("hidden")[:, 1].astype(np.float64)
    query = trace.array("hidden")[a : a + 10, 1].astype(np.float64)
    both = np.concatenate([query, doc_states])  # the query first, so brute_force can exclude it
    expected = [(s - 10, d) for s, d in brute_force(both, 0, 9, 8)]
    expected = [(s, d) for s, d in expected][: len(in_doc)]
    assert [m[1] for m in in_doc] == [s for s, _ in expected]
    np.testing.assert_allclose([m[3] for m in in_doc], [d for _, d in expected], atol=2e-5)


def test_store_of_another_model_is_refused(lstm, lstm_trace, lstm_dir_factory, tmp_path, capsys):
    from memviz.backends.registry import load_backend
    from memviz.memory.store import MemoryStore

    path, _ = lstm_trace
    other = load_backend(str(lstm_dir_factory(tmp_path / "other", layers=2, hidden=24, seed=5)))
    with MemoryStore.open(tmp_path / "o.sqlite", backend=other, create=True) as store:
        store.add_document(REPEAT, "doc.txt", other)
    code, _, err = run_cli(
        capsys,
        *("search", "--trace", str(path), "--layer", "1", "--steps", "3-5"),
        *("--memory", str(tmp_path / "o.sqlite"), "--model", str(lstm)),
    )
    assert code == 2 and err.count("\n") == 1 and "belongs to model" in err


# -- bad input: one line, exit 2 --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--steps", "200-210"], "out of range"),
        (["--steps", "9-3"], "comes after"),
        (["--steps", "a-b"], "give A-B"),
        (["--steps", "3-5", "--units", "3,99"], "unit 99 is out of range"),
        (["--steps", "3-5", "--units", "3,3"], "named twice"),
        (["--steps", "3-5", "--layer", "2"], "--layer 2 is out of range"),
    ],
)
def test_bad_input_is_one_line_exit_2(lstm_trace, capsys, extra, says):
    path, _ = lstm_trace
    argv = ["search", "--trace", str(path), "--layer", "1", *extra]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("memviz: error:") and says in err, err


def test_transformer_units_and_non_traces_are_refused(gpt2_trace, tmp_path, capsys):
    path, _ = gpt2_trace
    code, _, err = run_cli(
        capsys, "search", "--trace", str(path), "--layer", "1", "--steps", "2-3", "--units", "1"
    )
    assert code == 2 and err.count("\n") == 1 and "units are for recurrent models" in err
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    code, _, err = run_cli(capsys, "search", "--trace", str(text), "--layer", "0", "--steps", "0-1")
    assert code == 2 and err.count("\n") == 1 and "not a memviz trace" in err


def test_transformer_trace_with_interventions_is_refused(gpt2, run_session, tmp_path, capsys):
    from memviz.core.interventions import parse_all

    trace = run_session(gpt2, REPEAT, interventions=parse_all(["head:0.1=zero"])).trace
    trace.save(tmp_path / "ablated.memviz")
    code, _, err = run_cli(
        capsys, "search", "--trace", str(tmp_path / "ablated.memviz"), "--layer", "0", "--steps", "2-3"
    )
    assert code == 2 and "interventions" in err


# -- the core's pieces --------------------------------------------------------------------------------------
def test_span_distances_in_blocks_equal_one_block(monkeypatch):
    rng = np.random.default_rng(0)
    states = rng.normal(size=(300, 7)).astype(np.float32)
    whole = pattern.span_distances(states, states[10:15])
    monkeypatch.setattr(pattern, "CHUNK_FLOATS", 40)  # one window per block
    np.testing.assert_array_equal(pattern.span_distances(states, states[10:15]), whole)
    assert whole[10] == 0.0 and np.all(whole[np.arange(len(whole)) != 10] > 0)


def test_nearest_spans_never_overlap():
    d = np.array([0.0, 0.1, 0.2, 0.3, 0.05, 0.4, 0.6, 0.7, 0.01])
    assert pattern.nearest_spans(d, 3, 10) == [0, 8, 4]  # 1, 2 overlap 0; 5, 6, 7 overlap 4 or 8
    assert pattern.nearest_spans(d, 3, 10, blocked=(0, 1)) == [8, 4]


def test_gru_layers_of_different_widths(rnn_dir_factory, run_session, tmp_path):
    """A GRU of layers 9, 5, 7: layer 1's states are its 5 units (the trace pads them to 9), read
    the same from the trace and by layer_states; a unit past its width is refused."""
    from memviz.backends.layer_states import layer_states
    from memviz.backends.registry import load_backend

    folder = rnn_dir_factory(tmp_path / "gru", cell="gru", sizes=(9, 5, 7))
    backend = load_backend(str(folder))
    trace = run_session(backend, REPEAT * 2).trace
    query = pattern.Query(layer=1, start=80, end=89, top=3)
    states = pattern.run_states(trace, query)
    assert states.shape == (len(trace), 5)
    np.testing.assert_allclose(layer_states(backend, trace.token_ids, 1), states, atol=1e-5)
    result = pattern.search(trace, query)
    expected = brute_force(states.astype(np.float64), 80, 89, 3)
    assert [m.start for m in result.matches] == [s for s, _ in expected]
    with pytest.raises(MemvizError, match="unit 5 is out of range: layer 1 has units 0..4"):
        pattern.check_query(trace, pattern.Query(layer=1, start=3, end=5, units=(5,)))


@pytest.mark.parametrize("n", [1, 3, 7])
def test_streamed_distances_equal_the_whole_document(n):
    """A long document's states come in pieces (any sizes, some shorter than the span): every span
    is compared once, as over the states held whole."""
    rng = np.random.default_rng(1)
    states = rng.normal(size=(120, 4)).astype(np.float32)
    sizes = [2, 1, 30, 5, 1, 81]
    cuts = np.cumsum(sizes)[:-1]
    pieces = np.split(states, cuts)
    for metric in pattern.METRICS:
        whole = pattern.span_distances(states, states[10 : 10 + n], metric, 0.2)
        streamed = pattern.streamed_distances(iter(pieces), states[10 : 10 + n], metric, 0.2)
        np.testing.assert_array_equal(streamed, whole)
    units = (0, 3)
    whole = pattern.span_distances(states[:, units], states[10 : 10 + n][:, units])
    streamed = pattern.streamed_distances(
        iter(pieces), states[10 : 10 + n][:, units], "euclidean", 0.0, units
    )
    np.testing.assert_array_equal(streamed, whole)


def test_layer_state_pieces_of_a_long_document_are_its_states(gpt2, lstm, monkeypatch):
    """Pieces: recurrent chunks (state carried) and transformer windows (overlapping context) make
    the same states as one pass where one pass fits."""
    from memviz.backends import layer_states as module
    from memviz.backends.registry import load_backend

    lstm_backend = load_backend(str(lstm))
    ids = lstm_backend.encode(REPEAT * 2).ids
    whole = module.layer_states(lstm_backend, ids, 1)
    monkeypatch.setattr(module, "CHUNK", 17)
    pieces = list(module.layer_state_pieces(lstm_backend, ids, 1))
    assert len(pieces) == -(-len(ids) // 17)
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-6)
    gpt2_backend = load_backend(str(gpt2), device="cpu")
    ids = gpt2_backend.encode(REPEAT * 8).ids  # longer than its 128 positions: windows
    assert len(ids) > gpt2_backend.info.context_size
    states = module.layer_states(gpt2_backend, ids, 2)
    assert states.shape == (len(ids), 32)
    head = gpt2_blocks_by_hand(gpt2, ids[:128], 2)  # the first window: its own pass
    np.testing.assert_allclose(states[:128], head, atol=1e-4)


def test_a_transformer_trace_whose_model_is_gone_asks_for_model(gpt2_trace, tmp_path, capsys):
    from memviz.core.trace import Trace

    _, trace = gpt2_trace
    moved = Trace.from_arrays(trace.to_arrays())
    moved.model["source"] = str(tmp_path / "gone")
    moved.save(tmp_path / "moved.memviz")
    code, _, err = run_cli(
        capsys, "search", "--trace", str(tmp_path / "moved.memviz"), "--layer", "0", "--steps", "2-3"
    )
    assert code == 2 and err.count("\n") == 1 and "give --model" in err
