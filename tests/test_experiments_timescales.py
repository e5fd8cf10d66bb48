"""`memviz experiment timescales`: the time constants against the trace's gates and against
nn.LSTM / nn.GRU's own weights stepped by hand; the cap, the hold runs, the command and its figure."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from memviz.backends.recurrent import load_recurrent
from memviz.backends.registry import load_backend
from memviz.cli import main
from memviz.experiments import timescales
from memviz.experiments.result import read_results

TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n" * 3


@pytest.fixture(scope="module")
def lstm_folder(tmp_path_factory, lstm_dir_factory):
    return lstm_dir_factory(tmp_path_factory.mktemp("ts") / "lstm", layers=2, hidden=12, seed=3)


@pytest.fixture(scope="module")
def gru_folder(tmp_path_factory, rnn_dir_factory):
    return rnn_dir_factory(tmp_path_factory.mktemp("ts") / "gru", cell="gru", sizes=(9, 5, 7), seed=1)


def hand_keep_gates(folder, text: str) -> list[np.ndarray]:
    """Each layer's keep gate [T, H_l] from the checkpoint's nn.LSTM / nn.GRU weights, stepped here
    in float64 with PyTorch's equations (and checked against the module's own outputs)."""
    model, tokenizer, _ = load_recurrent(folder)
    ids = tokenizer.encode(text).ids
    x_all = model.embedding.weight.detach().double()[ids]
    gates = []
    for k, size in enumerate(model.layer_sizes):
        w_ih, w_hh, b_ih, b_hh = (p.detach().double() for p in model.layer_params(k))
        h = torch.zeros(size, dtype=torch.float64)
        c = torch.zeros(size, dtype=torch.float64)
        keep, outputs = [], []
        for x in x_all:
            gi, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
            if model.cell == "lstm":  # i, f, g, o
                i, f = (
                    torch.sigmoid(gi[:size] + gh[:size]),
                    torch.sigmoid(gi[size : 2 * size] + gh[size : 2 * size]),
                )
                g = torch.tanh(gi[2 * size : 3 * size] + gh[2 * size : 3 * size])
                o = torch.sigmoid(gi[3 * size :] + gh[3 * size :])
                c = f * c + i * g
                h = o * torch.tanh(c)
                keep.append(f)
            else:  # r, z, n; h' = (1 - z) n + z h
                r = torch.sigmoid(gi[:size] + gh[:size])
                z = torch.sigmoid(gi[size : 2 * size] + gh[size : 2 * size])
                n = torch.tanh(gi[2 * size :] + r * gh[2 * size :])
                h = (1 - z) * n + z * h
                keep.append(z)
            outputs.append(h)
        gates.append(torch.stack(keep).numpy())
        x_all = torch.stack(outputs)
    # the hand loop is PyTorch's: its top layer equals the model's own batched run
    with torch.no_grad():
        top, _ = model.run(torch.tensor([ids]))
    np.testing.assert_allclose(x_all.numpy(), top[0].double().numpy(), atol=1e-5)
    return gates


@pytest.mark.parametrize("which", ["lstm", "gru"])
def test_time_constants_equal_hand_stepped_weights_and_the_traces_gates(which, lstm_folder, gru_folder):
    folder = lstm_folder if which == "lstm" else gru_folder
    backend = load_backend(str(folder))
    trace, warnings = timescales.read_text(backend, TEXT)
    assert warnings == []
    ts = timescales.trace_timescales(trace)
    assert ts.gate == ("f" if which == "lstm" else "z")
    hand = hand_keep_gates(folder, TEXT)
    gate_index = list(trace.model["gate_names"]).index(ts.gate)
    raw = trace.array("gates")  # [T, L, G, W]
    assert [ly.units for ly in ts.layers] == [g.shape[1] for g in hand]  # padding left out
    for ly, keep in zip(ts.layers, hand, strict=True):
        mean = keep.mean(axis=0)
        np.testing.assert_allclose(ly.mean_gate, mean, atol=1e-6)
        np.testing.assert_allclose(ly.time_constant, [-1 / math.log(f) for f in mean], rtol=1e-4)
        # and from the trace's own gates, the layer's columns only
        from_trace = raw[:, ly.layer, gate_index, : ly.units].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(ly.time_constant, -1 / np.log(from_trace), rtol=1e-9)
    if which == "gru":  # the padding of the narrower layers is zero, and would have read as f = 0
        assert not raw[:, 1, gate_index, 5:].any()


def test_the_cap_and_its_edges():
    tau, capped = timescales.time_constants(np.array([1.0, 0.99995, 0.5, 0.0, 0.9999]))
    cap = timescales.TIME_CONSTANT_CAP
    np.testing.assert_allclose(tau, [cap, cap, 1 / math.log(2), 0.0, -1 / math.log(0.9999)])
    assert capped.tolist() == [True, True, False, False, False]


def test_longest_runs_equal_a_plain_loop():
    rng = np.random.default_rng(0)
    above = rng.random((200, 30)) > 0.35
    above[:, 0] = False
    above[:, 1] = True
    lengths, starts = timescales.longest_runs(above)
    for u in range(above.shape[1]):
        best, best_start, run, run_start = 0, -1, 0, 0
        for t, on in enumerate(above[:, u]):
            if on:
                run_start = t if run == 0 else run_start
                run += 1
                if run > best:
                    best, best_start = run, run_start
            else:
                run = 0
        assert (lengths[u], starts[u]) == (best, best_start), u


def test_experiment_writes_rows_top_units_and_figures(lstm_folder, gru_folder, tmp_path, capsys):
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT)
    out = tmp_path / "out"
    code = main(
        ["experiment", "timescales", "--model", str(lstm_folder), "--model", str(gru_folder),
         "--text-file", str(text_file), "--out", str(out), "--top", "5", "--quiet"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = read_results(out)
    names = result.model_names()
    assert len(result.rows) == 2 * 12 + 9 + 5 + 7
    backend = load_backend(str(gru_folder))
    trace, _ = timescales.read_text(backend, TEXT)
    ts = timescales.trace_timescales(trace)
    gru_rows = [r for r in result.rows if r["model"] == names[1]]
    for row in gru_rows:
        ly = ts.layers[row["layer"]]
        assert row["gate"] == "z"
        assert row["mean_gate"] == pytest.approx(float(ly.mean_gate[row["unit"]]), abs=1e-12)
        assert row["hold_steps"] == int(ly.hold_length[row["unit"]])
    assert sorted(r["rank"] for r in gru_rows) == list(range(1, 22))
    top = result.extra["per_model"][names[1]]["top_units"]
    assert len(top) == 5
    assert [u["time_constant"] for u in top] == sorted((u["time_constant"] for u in top), reverse=True)
    longest = max(gru_rows, key=lambda r: (r["time_constant"], r["mean_gate"]))
    assert (top[0]["layer"], top[0]["unit"]) == (longest["layer"], longest["unit"])
    first = top[0]
    gates = trace.array("gates")[:, first["layer"], 1, first["unit"]]
    run = gates[first["hold_start"] : first["hold_start"] + first["hold_steps"]]
    assert (run > 0.9).all() and first["hold_steps"] >= 1
    expected = "".join(trace.token_text[first["hold_start"] : first["hold_start"] + first["hold_steps"]])
    assert first["hold_text"] == expected[: timescales.SPAN_CHARS] or "…" in first["hold_text"]
    layer_counts = [sum(p["histogram"]) for p in result.extra["per_model"][names[0]]["layers"]]
    assert layer_counts == [12, 12]
    document = json.loads((out / "results.json").read_text())
    assert document["settings"]["time_constant_cap"] == timescales.TIME_CONSTANT_CAP
    for ext in ("svg", "pdf", "png"):
        assert (out / f"figure.{ext}").stat().st_size > 1000


def test_a_transformer_is_refused_in_one_line(gpt2_dir, tmp_path, capsys):
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT)
    code = main(["experiment", "timescales", "--model", str(gpt2_dir), "--text-file", str(text_file),
                 "--out", str(tmp_path / "out"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "transformer" in err and "recurrent" in err
    assert not (tmp_path / "out" / "results.csv").exists()
