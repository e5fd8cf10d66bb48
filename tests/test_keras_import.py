"""Keras 3 (torch backend, no TensorFlow) LSTM and GRU models, built here, read by memviz with h5py.

References come from Keras itself: its cells stepped token by token (h and c), its predict() on every
prefix (a classifier's per-step answer, a language model's next-token distribution); gates are
recomputed in float64 from the Keras weights in Keras's own layout (i, f, c, o; z, r, h).
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from memviz.backends.keras_import import load_keras, load_keras_backend  # noqa: E402
from memviz.backends.registry import load_backend  # noqa: E402
from memviz.core.session import Session  # noqa: E402
from memviz.errors import CheckpointError  # noqa: E402

TOL = 1e-5
WORDS = ["", "[UNK]", "the", "film", "was", "good", "bad", "not", "very", "plot", "a", "and"]
TEXT = "The film was not very good, and the plot was BAD; a zebra film."


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _build(cell: str, sizes: tuple[int, ...], head: str, seed: int = 0, vocab: int = len(WORDS)):
    keras.utils.set_random_seed(seed)
    layer = keras.layers.LSTM if cell == "lstm" else keras.layers.GRU
    layers = [keras.Input((None,), dtype="int32"), keras.layers.Embedding(vocab, 6)]
    for k, H in enumerate(sizes):
        last = k == len(sizes) - 1
        layers.append(layer(H, return_sequences=(head == "lm") or not last))
        layers.append(keras.layers.Dropout(0.3))
    if head == "lm":
        layers.append(keras.layers.Dense(vocab, activation="softmax"))
    elif head == "binary":
        layers.append(keras.layers.Dense(1, activation="sigmoid"))
    else:
        layers.append(keras.layers.Dense(3, activation="softmax"))
    model = keras.Sequential(layers)
    # Larger weights than Keras's initialisers: gates saturate and differ, a sharper test.
    model.set_weights([w * 2.5 + 0.1 * np.sign(w) for w in model.get_weights()])
    return model


def _keras_steps(model, ids):
    """Each recurrent layer's cell stepped by Keras: per step, per layer, h (and c)."""
    emb = model.layers[0]
    recurrent = [x for x in model.layers if isinstance(x, (keras.layers.LSTM, keras.layers.GRU))]
    x = keras.ops.convert_to_numpy(emb(np.array([ids])))[0]
    hs, cs = [], []
    inputs = x
    for layer in recurrent:
        H = layer.units
        states = [np.zeros((1, H), "float32")] * (2 if isinstance(layer, keras.layers.LSTM) else 1)
        h_layer, c_layer = [], []
        for t in range(len(ids)):
            out, states = layer.cell(inputs[t : t + 1], states, training=False)
            states = [keras.ops.convert_to_numpy(s) for s in states]
            h_layer.append(keras.ops.convert_to_numpy(out)[0])
            c_layer.append(states[1][0] if len(states) > 1 else None)
        hs.append(np.stack(h_layer))
        cs.append(c_layer)
        inputs = np.stack(h_layer)
    return recurrent, hs, cs


def _save(model, tmp_path, kind: str):
    path = tmp_path / f"m.{kind}"
    model.save(str(path))
    return path


def _vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("kind", ["keras", "h5"])
def test_keras_states_and_gates_equal_keras(cell, kind, tmp_path):
    sizes = (7, 5)  # different sizes per layer
    model = _build(cell, sizes, "binary", seed=1)
    path = _save(model, tmp_path, kind)
    backend = load_backend(str(path), vocab=str(_vocab_file(tmp_path)))
    assert backend.info.architecture == cell and backend.layer_sizes == list(sizes)
    ids = backend.encode(TEXT).ids
    # The default word rule: lower-cased, words and single punctuation marks: ",", ";", "zebra", "."
    assert backend.encode(TEXT).unknown_count == 4
    backend.reset()
    outs = [backend.step(t) for t in ids]
    recurrent, hs, cs = _keras_steps(model, ids)
    W = max(sizes)
    for k, (layer, H) in enumerate(zip(recurrent, sizes, strict=True)):
        h = np.stack([o.internals["hidden"][k] for o in outs])
        gates = np.stack([o.internals["gates"][k] for o in outs])
        assert h.shape == (len(ids), W) and gates.shape[1:] == ((4 if cell == "lstm" else 3), W)
        np.testing.assert_allclose(h[:, :H], hs[k], atol=TOL, rtol=0)
        assert not h[:, H:].any() and not gates[:, :, H:].any()  # padding of the narrower layer
        if cell == "lstm":
            c = np.stack([o.internals["cell"][k] for o in outs])[:, :H]
            ref_c = np.stack(cs[k])
            assert (np.abs(c - ref_c) / np.maximum(1, np.abs(ref_c))).max() < TOL
        # Gates from Keras's weights in Keras's layout, float64.
        kernel, recurrent_kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
        x_in = (
            np.asarray(keras.ops.convert_to_numpy(model.layers[0](np.array([ids])))[0], np.float64)
            if k == 0
            else hs[k - 1].astype(np.float64)
        )
        h_prev = np.vstack([np.zeros(H), hs[k][:-1].astype(np.float64)])
        if cell == "lstm":
            z = x_in @ kernel + h_prev @ recurrent_kernel + bias
            i, f, g, o = np.split(z, 4, axis=1)
            expected = np.stack([_sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)], axis=1)
        else:
            xz, xr, xh = np.split(x_in @ kernel + bias[0], 3, axis=1)
            hz, hr, hh = np.split(h_prev @ recurrent_kernel + bias[1], 3, axis=1)
            z, r = _sigmoid(xz + hz), _sigmoid(xr + hr)
            n = np.tanh(xh + r * hh)
            expected = np.stack([r, z, n], axis=1)  # PyTorch's order
            np.testing.assert_allclose(hs[k], (1 - z) * n + z * h_prev, atol=TOL, rtol=0)
        np.testing.assert_allclose(gates[:, :, :H], expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("head", ["binary", "softmax"])
def test_classifier_per_step_equals_keras_predict_on_each_prefix(cell, head, tmp_path):
    model = _build(cell, (6, 4), head, seed=2)
    path = _save(model, tmp_path, "keras")
    backend = load_keras_backend(path, vocab=str(_vocab_file(tmp_path)))
    session = Session(backend)
    session.feed(TEXT)
    session.run()
    trace = session.trace
    ids = trace.token_ids
    prediction = trace.array("prediction")
    C = 1 if head == "binary" else 3
    assert prediction.shape == (len(ids), C)
    assert trace.model["head"] == "classifier" and len(trace.model["labels"]) == C
    assert trace.array("topk_ids").shape == (len(ids), 0)  # a classifier has no next-token candidates
    expected = np.stack(
        [np.asarray(model.predict(np.array([ids[: t + 1]]), verbose=0))[0] for t in range(len(ids))]
    )
    np.testing.assert_allclose(prediction, expected, atol=TOL, rtol=0)
    if head == "softmax":
        np.testing.assert_allclose(prediction.sum(1), 1, atol=1e-6)
    with pytest.raises(Exception, match="classifier"):
        session.generate(1)
        session.step()


def test_keras_language_model_next_token_distribution(tmp_path):
    model = _build("gru", (8,), "lm", seed=3)
    path = _save(model, tmp_path, "h5")
    backend = load_backend(str(path), vocab=str(_vocab_file(tmp_path)))
    assert backend.head == "lm"
    ids = backend.encode(TEXT).ids
    expected = np.asarray(model.predict(np.array([ids]), verbose=0))[0]
    backend.reset()
    for t, token in enumerate(ids):
        logits = backend.step(token).logits.numpy().astype(np.float64)
        p = np.exp(logits - logits.max())
        np.testing.assert_allclose(p / p.sum(), expected[t], atol=TOL, rtol=0)


def test_word_tokenization_equals_keras_tokenizer_rule(tmp_path):
    """A Keras Tokenizer JSON: lower-cased, filters as separators, OOV token; the reference is the
    rule keras.preprocessing.text.text_to_word_sequence applies, written out here."""
    word_index = {"<oov>": 1, "the": 2, "film": 3, "was": 4, "not": 5, "good": 6, "plot": 7}
    data = {
        "class_name": "Tokenizer",
        "config": {
            "num_words": None,
            "filters": '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n',
            "lower": True,
            "split": " ",
            "char_level": False,
            "oov_token": "<oov>",
            "word_index": json.dumps(word_index),
        },
    }
    vocab = tmp_path / "tokenizer.json"
    vocab.write_text(json.dumps(data))
    model = _build("lstm", (4,), "binary", vocab=8)
    backend = load_keras_backend(_save(model, tmp_path, "keras"), vocab=str(vocab))
    text = "The film, was NOT good!!  the-plot... zebra"
    filtered = "".join(" " if ch in data["config"]["filters"] else ch for ch in text.lower())
    expected = [word_index.get(w, 1) for w in filtered.split(" ") if w]
    enc = backend.encode(text)
    assert enc.ids == expected and enc.unknown_count == 1


def test_text_vectorization_vocabulary_inside_the_file(tmp_path):
    """A .keras file whose first layer is a TextVectorization (built by hand: the layer itself needs
    TensorFlow): its vocabulary asset and lower_and_strip_punctuation rule are read."""
    model = _build("lstm", (4,), "binary")
    path = _save(model, tmp_path, "keras")
    rebuilt = tmp_path / "tv.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(rebuilt, "w") as dst:
        config = json.loads(src.read("config.json"))
        tv = {
            "class_name": "TextVectorization",
            "config": {
                "name": "text_vectorization",
                "standardize": "lower_and_strip_punctuation",
                "split": "whitespace",
                "output_mode": "int",
                "ngrams": None,
                "vocabulary": None,
            },
        }
        config["config"]["layers"].insert(1, tv)
        for name in src.namelist():
            dst.writestr(name, json.dumps(config) if name == "config.json" else src.read(name))
        dst.writestr("assets/layers/text_vectorization/vocabulary.txt", "\n".join(WORDS))
    backend = load_backend(str(rebuilt))
    enc = backend.encode("The film wasn't GOOD, zebra!")
    # lower, strip punctuation ("wasn't" -> "wasnt"), split on whitespace
    assert enc.ids == [2, 3, 1, 5, 1] and enc.unknown_count == 2


def test_unsupported_layer_is_one_clear_line(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(12, 4),
            keras.layers.Bidirectional(keras.layers.LSTM(3)),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    path = _save(model, tmp_path, "keras")
    with pytest.raises(CheckpointError, match="unsupported Keras layer Bidirectional"):
        load_keras(path, vocab=str(_vocab_file(tmp_path)))
    model = _build("lstm", (4,), "binary")
    with pytest.raises(CheckpointError, match="no vocabulary inside; give --vocab"):
        load_keras(_save(model, tmp_path, "h5"))


def test_keras_gru_reset_before_is_refused(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(12, 4),
            keras.layers.GRU(3, reset_after=False),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    with pytest.raises(CheckpointError, match="reset_after=False"):
        load_keras(_save(model, tmp_path, "keras"), vocab=str(_vocab_file(tmp_path)))
