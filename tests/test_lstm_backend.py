"""The LSTM backend against PyTorch's own nn.LSTM, on random 3-layer models built here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy

from memviz.backends.lstm import (
    CharTokenizer,
    LSTMBackend,
    LSTMLanguageModel,
    load_lstm,
    save_lstm_checkpoint,
)
from memviz.backends.registry import load_backend
from memviz.core.session import Session
from memviz.errors import CheckpointError

TOL = 1e-5
TEXT = "The lazy fox: def f(x): return x + 1\nquick brown dog. " * 2


def _scaled_lstm_dir(folder, sample_text, scale: float = 3.0, seed: int = 1):
    """A random LSTM with weights large enough that gates saturate and differ (a sharper test)."""
    torch.manual_seed(seed)
    tokenizer = CharTokenizer.from_text(sample_text)
    model = LSTMLanguageModel(len(tokenizer.tokens), 12, 24, 3)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    save_lstm_checkpoint(model, tokenizer, folder)
    return folder


@pytest.fixture(scope="module", params=["default", "scaled"])
def lstm_folder(request, lstm_dir, tmp_path_factory, sample_text):
    if request.param == "default":
        return lstm_dir
    return _scaled_lstm_dir(tmp_path_factory.mktemp("lstm-scaled") / "scaled-lstm", sample_text)


def _reference_per_step(model: LSTMLanguageModel, ids: list[int]):
    """Feed nn.LSTM one token at a time, carrying its state: h_n, c_n [L,H] and logits per step."""
    hs, cs, logits = [], [], []
    state = None
    with torch.no_grad():
        for token in ids:
            out, state = model(torch.tensor([[token]]), state)
            hs.append(state[0][:, 0, :].numpy().copy())
            cs.append(state[1][:, 0, :].numpy().copy())
            logits.append(out[0, -1].numpy().copy())
    return np.stack(hs), np.stack(cs), np.stack(logits)


def _run_backend(backend: LSTMBackend, ids: list[int]):
    backend.reset()
    outs = [backend.step(t) for t in ids]
    return (
        np.stack([o.internals["hidden"] for o in outs]),
        np.stack([o.internals["cell"] for o in outs]),
        np.stack([o.internals["gates"] for o in outs]),
        np.stack([o.logits.numpy() for o in outs]),
        np.stack([o.memory_key for o in outs]),
    )


def test_instrumented_step_equals_nn_lstm(lstm_folder):
    model, tokenizer, config = load_lstm(lstm_folder)
    assert config.num_layers == 3
    backend = LSTMBackend(model, tokenizer, name="t", source=str(lstm_folder))
    ids = tokenizer.encode(TEXT).ids
    h, c, gates, logits, keys = _run_backend(backend, ids)
    T, L, H = len(ids), config.num_layers, config.hidden_size
    assert h.shape == c.shape == (T, L, H)
    assert gates.shape == (T, L, 4, H)
    assert h.dtype == c.dtype == gates.dtype == np.float32

    ref_h, ref_c, ref_logits = _reference_per_step(model, ids)
    err_h = np.abs(h - ref_h).max()
    err_c = np.abs(c - ref_c).max()
    err_logits = np.abs(logits - ref_logits).max()
    print(f"LSTM max error vs nn.LSTM: h {err_h:.2e} c {err_c:.2e} logits {err_logits:.2e}")
    assert err_h < TOL and err_c < TOL and err_logits < TOL

    # The whole sequence in one call: nn.LSTM's top-layer outputs, final state and logits.
    with torch.no_grad():
        seq_logits, (h_n, c_n) = model(torch.tensor([ids]))
        top = model.lstm(model.embedding(torch.tensor([ids])))[0][0].numpy()
    np.testing.assert_allclose(h[:, -1, :], top, atol=TOL, rtol=0)
    np.testing.assert_allclose(h[-1], h_n[:, 0].numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(c[-1], c_n[:, 0].numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(logits, seq_logits[0].numpy(), atol=TOL, rtol=0)
    # The kNN key is the top layer's h.
    np.testing.assert_array_equal(keys, h[:, -1, :])


def test_gates_match_independent_recomputation(lstm_folder):
    """Recompute i, f, g, o in float64 numpy from the raw safetensors weights and the recorded states."""
    weights = {k: v.astype(np.float64) for k, v in load_numpy(str(lstm_folder / "model.safetensors")).items()}
    backend = LSTMBackend.from_folder(lstm_folder)
    ids = backend.encode(TEXT).ids
    h, c, gates, logits, _ = _run_backend(backend, ids)
    L, H = backend.num_layers, backend.hidden_size

    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    worst = 0.0
    for t, token in enumerate(ids):
        x = weights["embedding.weight"][token]
        for k in range(L):
            h_prev = h[t - 1, k].astype(np.float64) if t else np.zeros(H)
            c_prev = c[t - 1, k].astype(np.float64) if t else np.zeros(H)
            z = (
                weights[f"lstm.weight_ih_l{k}"] @ x
                + weights[f"lstm.bias_ih_l{k}"]
                + weights[f"lstm.weight_hh_l{k}"] @ h_prev
                + weights[f"lstm.bias_hh_l{k}"]
            )
            i, f, g, o = sigmoid(z[:H]), sigmoid(z[H : 2 * H]), np.tanh(z[2 * H : 3 * H]), sigmoid(z[3 * H :])
            expected = np.stack([i, f, g, o])
            worst = max(worst, np.abs(gates[t, k] - expected).max())
            np.testing.assert_allclose(gates[t, k], expected, atol=TOL, rtol=0)
            np.testing.assert_allclose(c[t, k], f * c_prev + i * g, atol=TOL, rtol=0)
            np.testing.assert_allclose(h[t, k], o * np.tanh(f * c_prev + i * g), atol=TOL, rtol=0)
            x = h[t, k].astype(np.float64)
        expected_logits = weights["head.weight"] @ x + weights["head.bias"]
        np.testing.assert_allclose(logits[t], expected_logits, atol=TOL, rtol=0)
    print(f"LSTM max gate error vs numpy float64: {worst:.2e}")
    # Gates are where they should be: sigmoids in (0, 1), tanh in (-1, 1).
    assert ((gates[:, :, [0, 1, 3]] >= 0) & (gates[:, :, [0, 1, 3]] <= 1)).all()
    assert (np.abs(gates[:, :, 2]) <= 1).all()


def test_reset_restarts_from_zero_state(lstm_dir):
    backend = LSTMBackend.from_folder(lstm_dir)
    ids = backend.encode("hello fox").ids
    first = [backend.step(t).logits.clone() for t in ids]
    assert backend.position == len(ids)
    backend.reset()
    assert backend.position == 0
    second = [backend.step(t).logits for t in ids]
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_char_tokenizer_maps_unknown_and_counts():
    tok = CharTokenizer.from_text("abc ")
    assert tok.tokens[tok.unk] == "\ufffd"
    enc = tok.encode("a€bz c€")
    assert enc.ids == [
        tok.index["a"],
        tok.unk,
        tok.index["b"],
        tok.unk,
        tok.index[" "],
        tok.index["c"],
        tok.unk,
    ]
    assert enc.unknown_count == 3
    assert tok.encode("abc").unknown_count == 0
    # The unknown token itself is in the vocabulary: reading it is not counted as unknown.
    assert tok.encode("\ufffd").ids == [tok.unk]
    assert tok.encode("\ufffd").unknown_count == 0
    with pytest.raises(CheckpointError):
        CharTokenizer(["a"], unk=3)
    with pytest.raises(CheckpointError):
        CharTokenizer([], unk=0)


def test_session_reports_unknown_count(lstm_dir):
    session = Session(load_backend(str(lstm_dir)))
    warnings = session.feed("fox ÄÖÜ jumps")
    assert len(warnings) == 1 and "3 character" in warnings[0]
    session.run()
    assert len(session.trace) == len("fox ÄÖÜ jumps")
    unk = session.backend.tokenizer.unk
    assert session.trace.token_ids[4:7] == [unk] * 3
    assert session.feed("fox") == []


def test_checkpoint_round_trip_and_format(tmp_path, lstm_dir_factory):
    folder = lstm_dir_factory(tmp_path / "m", layers=2, hidden=8, embedding=4, seed=3)
    config = json.loads((folder / "config.json").read_text())
    assert config == {
        "model_type": "memviz-lstm",
        "vocab_size": config["vocab_size"],
        "embedding_dim": 4,
        "hidden_size": 8,
        "num_layers": 2,
        "tokenizer": "char",
    }
    vocab = json.loads((folder / "vocab.json").read_text())
    assert len(vocab["tokens"]) == config["vocab_size"] and vocab["tokens"][vocab["unk"]] == "\ufffd"
    names = set(load_numpy(str(folder / "model.safetensors")))
    expected = {"embedding.weight", "head.weight", "head.bias"} | {
        f"lstm.{w}_l{k}" for k in range(2) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    }
    assert names == expected
    backend = load_backend(str(folder))
    assert backend.info.architecture == "lstm"
    assert (backend.info.num_layers, backend.info.hidden_size, backend.info.num_heads) == (2, 8, 0)
    assert backend.info.context_size is None


def test_checkpoint_shape_mismatch_is_refused(tmp_path, lstm_dir_factory):
    folder = lstm_dir_factory(tmp_path / "m", layers=2, hidden=8, embedding=4)
    config = json.loads((folder / "config.json").read_text())
    config["hidden_size"] = 9
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match"):
        load_backend(str(folder))


def test_fingerprint_tells_models_apart(tmp_path, lstm_dir_factory):
    a = LSTMBackend.from_folder(lstm_dir_factory(tmp_path / "a", layers=1, hidden=8, seed=0))
    a2 = LSTMBackend.from_folder(tmp_path / "a")
    b = LSTMBackend.from_folder(lstm_dir_factory(tmp_path / "b", layers=1, hidden=8, seed=1))
    assert a.fingerprint() == a2.fingerprint() != b.fingerprint()
