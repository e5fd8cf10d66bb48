"""The recurrent family on folders built here: GRU and LSTM layers of different sizes against PyTorch's
own nn.GRU / nn.LSTM, classifier heads, the three tokenizers, memviz convert, and bad checkpoints
(issue 13, items 11 and 12): one line, exit 2, nothing built."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from conftest import SAMPLE_TEXT
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy

import memviz.backends.recurrent_backend as recurrent_module
from memviz.backends.recurrent import RecurrentBackend, RecurrentModel, RNNConfig, save_recurrent
from memviz.backends.registry import load_backend
from memviz.backends.tokenizers import CharTokenizer, HFTokenizer, WordTokenizer
from memviz.cli import main
from memviz.core.session import Session
from memviz.core.trace import Trace
from memviz.errors import CheckpointError

TOL = 1e-5
TEXT = "the quick brown fox jumps over the lazy dog. The dog sleeps!"
WORDS = ["<pad>", "<unk>", "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", ".", "!"]


def _folder(tmp_path, cell="gru", sizes=(9, 5, 7), head="lm", tokenizer=None, labels=None, seed=0, scale=2.0):
    torch.manual_seed(seed)
    tokenizer = tokenizer or CharTokenizer.from_text(SAMPLE_TEXT)
    labels = labels or (["negative", "positive"] if head == "classifier" else [])
    config = RNNConfig(
        cell=cell,
        vocab_size=len(tokenizer.tokens),
        embedding_dim=6,
        layer_sizes=sizes,
        tokenizer=tokenizer.kind,
        head=head,
        labels=tuple(labels),
    )
    model = RecurrentModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)  # saturating gates: a sharper test
    return save_recurrent(model, tokenizer, tmp_path / f"{cell}-{head}", head=head, labels=labels)


def _reference(folder, cell, sizes, ids):
    """PyTorch's own modules, one per layer, loaded from the raw file: per layer h [T, H] and head out."""
    w = {k: torch.from_numpy(v) for k, v in load_numpy(str(folder / "model.safetensors")).items()}
    x = w["embedding.weight"][torch.tensor(ids)].unsqueeze(0)
    outs = []
    for k, H in enumerate(sizes):
        m = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(x.shape[-1], H, batch_first=True)
        m.load_state_dict(
            {f"{n}_l0": w[f"{cell}.{n}_l{k}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        )
        with torch.no_grad():
            x, _ = m(x)
        outs.append(x[0].numpy())
    head = outs[-1] @ w["head.weight"].numpy().T + w["head.bias"].numpy()
    return outs, head


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_layers_of_different_sizes_equal_pytorch(tmp_path, cell):
    sizes = (9, 5, 7)
    folder = _folder(tmp_path, cell, sizes)
    backend = load_backend(str(folder))
    assert backend.info.architecture == cell and backend.info.kind == "recurrent"
    ids = backend.encode(TEXT).ids
    outs = [backend.step(t) for t in ids]
    ref_h, ref_logits = _reference(folder, cell, sizes, ids)
    for k, H in enumerate(sizes):
        h = np.stack([o.internals["hidden"][k] for o in outs])
        np.testing.assert_allclose(h[:, :H], ref_h[k], atol=TOL, rtol=0)
        assert not h[:, H:].any()
    np.testing.assert_allclose(np.stack([o.logits.numpy() for o in outs]), ref_logits, atol=TOL, rtol=0)
    G = 3 if cell == "gru" else 4
    assert outs[0].internals["gates"].shape == (3, G, 9)
    assert ("cell" in outs[0].internals) == (cell == "lstm")
    names = backend.hook_points()
    assert ("rnn.0.cell" in names) == (cell == "lstm") and "rnn.2.gates" in names
    # GRU: h = (1 - z) * n + z * h_prev, with the recorded gates
    if cell == "gru":
        g = np.stack([o.internals["gates"][1, :, :5] for o in outs])
        h = np.stack([o.internals["hidden"][1, :5] for o in outs])
        prev = np.vstack([np.zeros(5), h[:-1]])
        np.testing.assert_allclose(h, (1 - g[:, 1]) * g[:, 2] + g[:, 1] * prev, atol=TOL, rtol=0)


def test_gru_document_keys_equal_stepping(tmp_path, monkeypatch):
    backend = RecurrentBackend.from_folder(_folder(tmp_path, "gru", (6, 4)))
    monkeypatch.setattr(recurrent_module, "DOCUMENT_CHUNK", 5)
    ids = backend.encode(TEXT).ids
    keys = np.stack(list(backend.document_keys(ids)))
    backend.reset()
    stepped = np.stack([backend.step(t).memory_key for t in ids[:-1]])
    assert keys.shape == (len(ids) - 1, 4) == (len(ids) - 1, backend.memory_key_dim)
    np.testing.assert_allclose(keys, stepped, atol=TOL, rtol=0)


@pytest.mark.parametrize("labels", [["positive"], ["neg", "neutral", "pos"]])
def test_classifier_trace_holds_per_step_prediction(tmp_path, labels):
    folder = _folder(tmp_path, "lstm", (5, 8), head="classifier", labels=labels)
    session = Session(load_backend(str(folder)))
    session.feed(TEXT)
    session.run()
    trace = session.trace
    _, logits = _reference(folder, "lstm", (5, 8), trace.token_ids)
    if len(labels) == 1:
        expected = 1 / (1 + np.exp(-logits))
    else:
        e = np.exp(logits - logits.max(1, keepdims=True))
        expected = e / e.sum(1, keepdims=True)
    np.testing.assert_allclose(trace.array("prediction"), expected, atol=TOL, rtol=0)
    path = trace.save(tmp_path / "run.memviz")
    loaded = Trace.load(path)
    assert loaded.model["labels"] == labels and loaded.model["gate_names"] == ["i", "f", "g", "o"]
    assert loaded.model["layer_sizes"] == [5, 8] and loaded.model["head"] == "classifier"
    np.testing.assert_array_equal(loaded.array("prediction"), trace.array("prediction"))


def test_word_tokenizer_equals_its_rule_and_counts_unknown(tmp_path):
    tok = WordTokenizer(WORDS, unk=1, pad=0)
    reference = [WORDS.index(w) if w in WORDS[2:] else 1 for w in re.findall(r"\w+|[^\w\s]", TEXT.lower())]
    enc = tok.encode(TEXT)
    assert enc.ids == reference and enc.unknown_count == reference.count(1) == 1  # "sleeps"
    backend = load_backend(str(_folder(tmp_path, "gru", (4,), tokenizer=tok)))
    assert backend.encode(TEXT).ids == reference
    assert Session(backend).feed(TEXT)[0].startswith("1 ")


def test_tokenizers_library_tokenization_equals_the_library(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    rust = Tokenizer(models.BPE(unk_token="[UNK]"))
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rust.train_from_iterator([SAMPLE_TEXT], trainers.BpeTrainer(vocab_size=120, special_tokens=["[UNK]"]))
    tok = HFTokenizer(rust, rust.get_vocab_size())
    backend = load_backend(str(_folder(tmp_path, "lstm", (6,), tokenizer=tok)))
    assert (tmp_path / "lstm-lm" / "tokenizer.json").is_file()
    assert backend.encode(TEXT).ids == rust.encode(TEXT, add_special_tokens=False).ids
    assert backend.info.extra["tokenizer"] == "tokenizers"


@pytest.mark.parametrize(
    "tokens, kind, match",
    [
        (["\ufffd", "a", "bc"], "char", "not one character"),
        (["\ufffd", "a", "a"], "char", "repeats token 1"),
        (["<unk>", "the", "Fox"], "word", "upper case"),
        (["<unk>", "the", "lazy dog"], "word", "not one match"),
    ],
)
def test_entries_that_can_never_match_are_refused(tokens, kind, match):
    with pytest.raises(CheckpointError, match=match):
        (CharTokenizer if kind == "char" else WordTokenizer)(tokens, 0)


# -- bad checkpoints at the command line (issue 13, items 11 and 12) -----------------------------------
def _edit_weights(folder, name, fn):
    w = load_numpy(str(folder / "model.safetensors"))
    w[name] = fn(w[name])
    save_numpy(w, str(folder / "model.safetensors"))


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "breakage, message",
    [
        (
            lambda f: _edit_weights(f, "gru.weight_hh_l0", lambda a: np.where(a > 0.5, np.nan, a)),
            "NaN or infinite",
        ),
        (lambda f: _edit_weights(f, "head.bias", lambda a: np.full_like(a, np.inf)), "NaN or infinite"),
        (lambda f: _edit_weights(f, "gru.weight_ih_l1", lambda a: a.astype(np.float16)), "must be float32"),
        (lambda f: _edit_weights(f, "embedding.weight", lambda a: a.astype(np.int64)), "must be float32"),
        (lambda f: _edit_config(f, layer_sizes=[6, 4.7]), "whole number"),
        (lambda f: _edit_config(f, layer_sizes=[6, 10**9]), "outside 1"),
        (lambda f: _edit_config(f, layer_sizes=[6, 100_000]), "wrong shape"),
        (lambda f: _edit_config(f, vocab_size=True), "whole number"),
        (lambda f: _edit_config(f, cell="rnn"), "unsupported cell"),
    ],
)
def test_bad_recurrent_checkpoint_is_one_line(tmp_path, capsys, breakage, message):
    folder = _folder(tmp_path, "gru", (6, 4))
    breakage(folder)
    rc = main(["trace", "--model", str(folder), "--text", "the fox", "--out", str(tmp_path / "t.memviz")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("memviz: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "t.memviz").exists()


@pytest.mark.parametrize(
    "hidden, message", [(256.7, "whole number"), (10**9, "outside 1"), (8192, "wrong shape")]
)
def test_lstm_folder_sizes_checked_against_the_header_first(
    lstm_dir_factory, tmp_path, capsys, monkeypatch, hidden, message
):
    folder = lstm_dir_factory(tmp_path / "m", layers=1, hidden=8, embedding=4)
    _edit_config(folder, hidden_size=hidden)
    built = []
    monkeypatch.setattr(torch.nn.LSTM, "__init__", lambda *a, **k: built.append(1))  # nothing is built
    rc = main(["trace", "--model", str(folder), "--text", "ab", "--out", str(tmp_path / "t.memviz")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1 and not built


def test_vocab_entry_that_never_matches_is_a_load_error(lstm_dir_factory, tmp_path, capsys):
    folder = lstm_dir_factory(tmp_path / "m", layers=1, hidden=8, embedding=4)
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["tokens"][1] = "ab"
    (folder / "vocab.json").write_text(json.dumps(vocab))
    rc = main(["trace", "--model", str(folder), "--text", "ab", "--out", str(tmp_path / "t.memviz")])
    err = capsys.readouterr().err
    assert rc == 2 and "can never read it" in err


# -- memviz convert ----------------------------------------------------------------------------------
def test_convert_lstm_folder_to_memviz_rnn(lstm_dir_factory, tmp_path, capsys):
    src = lstm_dir_factory(tmp_path / "old", layers=2, hidden=8, embedding=4)
    out = tmp_path / "new"
    assert main(["convert", str(src), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert (
        config["model_type"] == "memviz-rnn" and config["cell"] == "lstm" and config["layer_sizes"] == [8, 8]
    )
    a, b = load_backend(str(src)), load_backend(str(out))
    ids = a.encode(TEXT).ids
    for t in ids:
        torch.testing.assert_close(a.step(t).logits, b.step(t).logits, rtol=0, atol=0)
    assert main(["convert", str(src), "--out", str(out)]) == 2  # not an empty folder


# -- the prediction panel ------------------------------------------------------------------------------
def test_prediction_panel_draws_the_trace_and_exports(tmp_path, make_panel, settle):
    from memviz.export.render import export_figure, supported_panel_classes
    from memviz.panels.prediction import PredictionPanel

    folder = _folder(tmp_path, "gru", (5, 4), head="classifier", labels=["neg", "mid", "pos"])
    session = Session(load_backend(str(folder)))
    session.feed(TEXT)
    session.run()
    trace = session.trace
    assert PredictionPanel in supported_panel_classes(trace)
    view, panel = make_panel(PredictionPanel, trace, cursor=7)
    settle(panel)
    assert [c.name() for c in panel.curves] == ["neg", "mid", "pos"]
    for k, curve in enumerate(panel.curves):
        _, y = curve.getData()
        np.testing.assert_array_equal(y, trace.array("prediction")[:, k])
    assert panel.cursor_line.value() == 7.5
    best = int(np.argmax(trace.array("prediction")[7]))
    assert ["neg", "mid", "pos"][best] in panel.plot.titleLabel.text
    view.update(cursor=3)
    assert panel.cursor_line.value() == 3.5
    from memviz.core.view import ViewState

    out = export_figure(trace, "prediction", ViewState(cursor=3), tmp_path / "p.png")
    assert out.stat().st_size > 1000
    # An LM trace has no prediction: the panel is not offered.
    lm = Session(load_backend(str(_folder(tmp_path, "gru", (4,)))))
    lm.feed("the fox")
    lm.run()
    assert PredictionPanel not in supported_panel_classes(lm.trace)


def test_readme_path_from_your_own_nn_gru(tmp_path):
    """The README's three lines: nn.Embedding + nn.GRU + nn.Linear saved and read back exactly."""
    from memviz.backends.recurrent import from_modules

    torch.manual_seed(4)
    emb, gru, head = (
        torch.nn.Embedding(len(WORDS), 5),
        torch.nn.GRU(5, 7, num_layers=2),
        torch.nn.Linear(7, len(WORDS)),
    )
    tok = WordTokenizer(WORDS, unk=1, pad=0)
    save_recurrent(from_modules(emb, gru, head), tok, tmp_path / "mine")
    backend = load_backend(str(tmp_path / "mine"))
    ids = backend.encode(TEXT).ids
    with torch.no_grad():
        out, _ = gru(emb(torch.tensor(ids)).unsqueeze(1))  # (T, 1, H): not batch_first
        expected = head(out[:, 0]).numpy()
    got = np.stack([backend.step(t).logits.numpy() for t in ids])
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)
