"""Keras recurrent models, read without TensorFlow: Keras 3 `.keras` files and Keras 2 `.h5` files.

A Sequential model of Embedding, LSTM or GRU layers (return_sequences or not), Dropout (ignored at
inference) and one final Dense (softmax, sigmoid or linear) becomes a `RecurrentModel` in PyTorch's
conventions. The config is the JSON inside the file; the weights are read with h5py:

- `.keras`: a zip of config.json and model.weights.h5, whose groups are `layers/<snake_case class
  name>[_n]/[cell/]vars/<i>` in the order of the layers (LSTM: kernel, recurrent_kernel, bias).
- `.h5`: `model_config` in the file's attributes; weights under `model_weights/<layer name>`, in the
  order its `weight_names` attribute lists.

Conversions: Keras's LSTM kernel columns are i, f, c, o (PyTorch's i, f, g, o): transposed, one bias
(b_hh = 0). Keras's GRU columns are z, r, h: reordered to r, z, n; `reset_after=True` (the default,
two biases) is PyTorch's GRU exactly; `reset_after=False` applies r before the recurrent matmul and is
refused.

The head is a language model when the last recurrent layer returns sequences and the Dense layer has
one output per vocabulary entry; otherwise a classifier (one output: sigmoid; several: softmax).
The vocabulary comes from a TextVectorization layer in the file (its config's `vocabulary` or its
assets' vocabulary.txt; "" and "[UNK]" first, as Keras orders them) or from `--vocab FILE`: a Keras
Tokenizer JSON (`tokenizer.to_json()`) or a plain list (JSON list, or one token a line).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from memviz.backends.recurrent import RecurrentBackend, RecurrentModel, RNNConfig
from memviz.backends.tokenizers import UNK_CANDIDATES, CharTokenizer, Tokenizer, WordTokenizer
from memviz.errors import CheckpointError

RECURRENT = ("LSTM", "GRU")
IGNORED = ("InputLayer", "Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise")
SUPPORTED = ("Embedding", *RECURRENT, "Dense", "TextVectorization", *IGNORED)
# TextVectorization's "lower_and_strip_punctuation" (keras.src.layers.preprocessing.text_vectorization)
KERAS_PUNCTUATION = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'
KERAS_TOKENIZER_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'


@dataclass
class KerasLayer:
    class_name: str
    config: dict
    weights: list[np.ndarray]


def _snake(name: str) -> str:
    """Keras 3's weight-group name for a class: "TextVectorization" -> "text_vectorization"."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _layer_list(model_config: dict, where: Path) -> list[dict]:
    if model_config.get("class_name") != "Sequential":
        raise CheckpointError(
            f"{where}: a {model_config.get('class_name')!r} model; memviz reads Keras Sequential models"
        )
    config = model_config.get("config")
    layers = config.get("layers") if isinstance(config, dict) else config
    if not isinstance(layers, list):
        raise CheckpointError(f"{where}: no layer list in the model's config")
    for layer in layers:
        cls = layer.get("class_name")
        if cls not in SUPPORTED:
            name = (layer.get("config") or {}).get("name", "?")
            raise CheckpointError(
                f"{where}: unsupported Keras layer {cls} ({name!r}); memviz reads Embedding, LSTM, GRU, "
                "Dropout and Dense"
            )
    return layers


def read_keras(path: Path) -> tuple[list[KerasLayer], dict[str, str]]:
    """The layers (class, config, weights in Keras's order) and, for .keras, its asset texts."""
    import h5py

    path = Path(path)
    assets: dict[str, str] = {}
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                if "config.json" not in names or "model.weights.h5" not in names:
                    raise CheckpointError(
                        f"{path}: not a Keras 3 .keras file (no config.json / model.weights.h5)"
                    )
                model_config = json.loads(z.read("config.json"))
                weights_bytes = z.read("model.weights.h5")
                for name in names:
                    if name.startswith("assets/") and name.endswith(".txt"):
                        assets[name] = z.read(name).decode("utf-8")
            layers = _layer_list(model_config, path)
            with h5py.File(io.BytesIO(weights_bytes), "r") as f:
                return _keras3_weights(layers, f, path), assets
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            if raw is None:
                raise CheckpointError(f"{path}: an HDF5 file without a Keras model_config (weights only?)")
            model_config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            layers = _layer_list(model_config, path)
            return _keras2_weights(layers, f, path), assets
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{path}: not a readable Keras model ({exc.__class__.__name__}: {exc})"
        ) from None


def _keras3_weights(layers: list[dict], f, where: Path) -> list[KerasLayer]:
    counts: dict[str, int] = {}
    out = []
    for layer in layers:
        cls = layer["class_name"]
        if cls == "InputLayer":
            continue
        key = _snake(cls)
        n = counts.get(key, 0)
        counts[key] = n + 1
        group_name = f"layers/{key}" + (f"_{n}" if n else "")
        weights: list[np.ndarray] = []
        if group_name in f:
            group = f[group_name]
            vars_group = group["cell/vars"] if "cell" in group and cls in RECURRENT else group.get("vars")
            if vars_group is not None:
                weights = [np.asarray(vars_group[str(i)]) for i in range(len(vars_group))]
        out.append(KerasLayer(cls, layer.get("config") or {}, weights))
    return out


def _keras2_weights(layers: list[dict], f, where: Path) -> list[KerasLayer]:
    root = f["model_weights"] if "model_weights" in f else f
    out = []
    for layer in layers:
        cls, config = layer["class_name"], layer.get("config") or {}
        if cls == "InputLayer":
            continue
        weights: list[np.ndarray] = []
        name = config.get("name")
        if name in root:
            group = root[name]
            for wname in group.attrs.get("weight_names", []):
                wname = wname.decode() if isinstance(wname, bytes) else str(wname)
                weights.append(np.asarray(group[wname]))
        out.append(KerasLayer(cls, config, weights))
    return out


def _check_recurrent(layer: KerasLayer, where: Path) -> None:
    c, name = layer.config, layer.config.get("name", "?")
    if c.get("activation", "tanh") != "tanh" or c.get("recurrent_activation", "sigmoid") != "sigmoid":
        raise CheckpointError(
            f"{where}: {layer.class_name} {name!r} uses activation {c.get('activation')!r} / recurrent_activation "
            f"{c.get('recurrent_activation')!r}; memviz steps tanh / sigmoid cells only"
        )
    if c.get("go_backwards"):
        raise CheckpointError(
            f"{where}: {layer.class_name} {name!r} reads backwards (go_backwards); not supported"
        )
    if layer.class_name == "GRU" and not c.get("reset_after", True):
        raise CheckpointError(
            f"{where}: GRU {name!r} has reset_after=False; memviz reads reset_after=True GRUs (PyTorch's GRU)"
        )


def _lstm_params(layer: KerasLayer, H: int) -> list[np.ndarray]:
    kernel, recurrent = layer.weights[0], layer.weights[1]
    bias = layer.weights[2] if len(layer.weights) > 2 else np.zeros(4 * H, dtype=np.float32)
    # Keras i, f, c, o is PyTorch's i, f, g, o: only the layout changes.
    return [kernel.T, recurrent.T, bias.reshape(-1), np.zeros(4 * H, dtype=np.float32)]


def _gru_params(layer: KerasLayer, H: int) -> list[np.ndarray]:
    def reorder(a: np.ndarray) -> np.ndarray:  # last axis z, r, h -> r, z, n
        z, r, h = np.split(a, 3, axis=-1)
        return np.concatenate([r, z, h], axis=-1)

    kernel, recurrent = layer.weights[0], layer.weights[1]
    bias = layer.weights[2] if len(layer.weights) > 2 else np.zeros((2, 3 * H), dtype=np.float32)
    return [reorder(kernel).T, reorder(recurrent).T, reorder(bias[0]), reorder(bias[1])]


@dataclass
class KerasModel:
    model: RecurrentModel
    head: str
    labels: tuple[str, ...]
    text_vectorization: dict | None  # its config, if the file has one


def build_model(layers: list[KerasLayer], where: Path, labels: list[str] | None = None) -> KerasModel:
    kinds = [layer.class_name for layer in layers if layer.class_name not in IGNORED]
    text_vec = None
    if kinds and kinds[0] == "TextVectorization":
        text_vec = layers[[x.class_name for x in layers].index("TextVectorization")].config
        kinds = kinds[1:]
    used = [x for x in layers if x.class_name in ("Embedding", *RECURRENT, "Dense")]
    if (
        not kinds
        or kinds[0] != "Embedding"
        or kinds[-1] != "Dense"
        or kinds.count("Dense") != 1
        or kinds.count("Embedding") != 1
        or len(kinds) < 3
    ):
        raise CheckpointError(
            f"{where}: layers {kinds}; memviz reads Embedding, then LSTM or GRU layers, then one Dense"
        )
    recurrent = used[1:-1]
    cells = {x.class_name for x in recurrent}
    if len(cells) != 1:
        raise CheckpointError(f"{where}: mixes LSTM and GRU layers; memviz reads one cell type a model")
    for x in recurrent:
        _check_recurrent(x, where)
    for x in recurrent[:-1]:
        if not x.config.get("return_sequences"):
            raise CheckpointError(f"{where}: {x.class_name} {x.config.get('name')!r} must return sequences")
    emb, dense = used[0], used[-1]
    if not emb.weights or not dense.weights or any(len(x.weights) < 2 for x in recurrent):
        raise CheckpointError(f"{where}: the file holds no weights for some layers (an unbuilt model?)")
    vocab_size, embedding_dim = emb.weights[0].shape
    sizes = tuple(int(x.config.get("units", x.weights[1].shape[0])) for x in recurrent)
    outputs = int(dense.weights[0].shape[1])
    activation = dense.config.get("activation", "linear")
    if activation not in ("softmax", "sigmoid", "linear"):
        raise CheckpointError(
            f"{where}: Dense activation {activation!r}; memviz reads softmax, sigmoid or linear"
        )
    lm = (
        bool(recurrent[-1].config.get("return_sequences"))
        and outputs == vocab_size
        and activation != "sigmoid"
    )
    head = "lm" if lm else "classifier"
    if head == "classifier":
        if labels is None:
            labels = ["class 1"] if outputs == 1 else [f"class {i}" for i in range(outputs)]
        if len(labels) != outputs:
            raise CheckpointError(f"{where}: {len(labels)} labels given for {outputs} outputs")
    cell = recurrent[0].class_name.lower()
    config = RNNConfig(
        cell=cell,
        vocab_size=int(vocab_size),
        embedding_dim=int(embedding_dim),
        layer_sizes=sizes,
        tokenizer="word",
        head=head,
        labels=tuple(labels or ()) if head == "classifier" else (),
    )
    model = RecurrentModel(config)
    convert = _lstm_params if cell == "lstm" else _gru_params
    state: dict[str, np.ndarray] = {"embedding.weight": emb.weights[0]}
    for k, (layer, H) in enumerate(zip(recurrent, sizes, strict=True)):
        for name, value in zip(
            ("weight_ih", "weight_hh", "bias_ih", "bias_hh"), convert(layer, H), strict=True
        ):
            state[f"{cell}.{name}_l{k}"] = value
    state["head.weight"] = dense.weights[0].T
    state["head.bias"] = dense.weights[1] if len(dense.weights) > 1 else np.zeros(outputs, dtype=np.float32)
    expected = config.expected_shapes()
    for name, value in state.items():
        if tuple(value.shape) != expected[name]:
            raise CheckpointError(
                f"{where}: {name} has shape {list(value.shape)}, expected {list(expected[name])}"
            )
        if not np.isfinite(value).all():
            raise CheckpointError(f"{where}: {name} holds NaN or infinite values")
    model.load_file_state(
        {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}
    )
    return KerasModel(model.eval(), head, config.labels, text_vec)


# -- vocabularies ---------------------------------------------------------------------------------
def _fill(tokens: list[str], vocab_size: int, where: str) -> tuple[list[str], int]:
    """Pad a vocabulary to the embedding's rows (unused rows: never read); returns (tokens, limit)."""
    if len(tokens) > vocab_size:
        raise CheckpointError(f"{where}: {len(tokens)} tokens but the Embedding has {vocab_size} rows")
    return tokens + [f"<unused {i}>" for i in range(len(tokens), vocab_size)], len(tokens)


def text_vectorization_tokenizer(
    config: dict, assets: dict[str, str], vocab_size: int, where: str
) -> Tokenizer:
    if config.get("output_mode", "int") != "int" or config.get("ngrams"):
        raise CheckpointError(f"{where}: TextVectorization must have output_mode='int' and no ngrams")
    vocab = config.get("vocabulary")
    if isinstance(vocab, str):
        vocab = None  # a path on the machine that made it: the asset copy is what travels
    if vocab is None:
        found = [text for name, text in assets.items() if name.endswith("vocabulary.txt")]
        if not found:
            raise CheckpointError(f"{where}: its TextVectorization layer carries no vocabulary")
        vocab = found[0].split("\n")
    vocab = [str(t) for t in vocab]
    # Keras puts the mask token "" and the OOV token "[UNK]" first, adding them when absent.
    oov = config.get("oov_token", "[UNK]") or "[UNK]"
    while vocab and vocab[0] in ("", oov):
        vocab = vocab[1:]
    tokens, limit = _fill(["", oov, *vocab], vocab_size, where)
    standardize, split = config.get("standardize"), config.get("split", "whitespace")
    lower = standardize in ("lower_and_strip_punctuation", "lower")
    strip = KERAS_PUNCTUATION if standardize in ("lower_and_strip_punctuation", "strip_punctuation") else None
    if standardize not in (None, "lower_and_strip_punctuation", "lower", "strip_punctuation"):
        raise CheckpointError(f"{where}: TextVectorization standardize={standardize!r} is not supported")
    patterns = {"whitespace": r"\S+", "character": r"(?s)."}
    if split not in patterns:
        raise CheckpointError(f"{where}: TextVectorization split={split!r} is not supported")
    return WordTokenizer(
        tokens, unk=1, pattern=patterns[split], lowercase=lower, pad=0, where=where, limit=limit, strip=strip
    )


def vocab_file_tokenizer(path: Path, vocab_size: int) -> Tokenizer:
    """A Keras Tokenizer JSON, a JSON list, or one token a line."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read the vocabulary ({exc})") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return _keras_tokenizer(data, vocab_size, where)
    tokens = [str(t) for t in data] if isinstance(data, list) else text.split("\n")
    if tokens and tokens[-1] == "" and not isinstance(data, list):
        tokens = tokens[:-1]  # the file's final newline
    unk = next((tokens.index(u) for u in UNK_CANDIDATES if u in tokens), None)
    if unk is None:
        raise CheckpointError(f"{path}: no unknown token in the list (one of {', '.join(UNK_CANDIDATES)})")
    pad = 0 if tokens and tokens[0] == "" else None
    tokens, limit = _fill(tokens, vocab_size, where)
    real = [t for i, t in enumerate(tokens[:limit]) if i not in (unk, pad)]
    if all(len(t) == 1 for t in real):
        if limit != len(tokens):
            raise CheckpointError(f"{path}: {limit} characters but the Embedding has {len(tokens)} rows")
        return CharTokenizer(tokens, unk, pad, where)
    return WordTokenizer(
        tokens, unk, lowercase=all(t == t.lower() for t in real), pad=pad, where=where, limit=limit
    )


def _keras_tokenizer(data: dict, vocab_size: int, where: str) -> Tokenizer:
    """keras.preprocessing.text.Tokenizer: lower-case, filters act as separators, split on `split`;
    index 0 is reserved; words at or beyond num_words are unknown (the OOV token, or dropped)."""
    config = data.get("config", data)
    word_index = config.get("word_index")
    if isinstance(word_index, str):
        word_index = json.loads(word_index)
    if not isinstance(word_index, dict):
        raise CheckpointError(f"{where}: not a Keras Tokenizer JSON (no word_index)")
    n = max(word_index.values()) + 1 if word_index else 1
    words = [""] * n
    for word, i in word_index.items():
        words[int(i)] = word
    oov = config.get("oov_token")
    unk = word_index.get(oov) if oov is not None else None
    num_words = config.get("num_words")
    tokens = words[:vocab_size]
    tokens, limit = _fill(tokens, vocab_size, where)
    if num_words:
        limit = min(limit, int(num_words))
    lower = bool(config.get("lower", True))
    if config.get("char_level"):
        pattern = r"(?s)."
    else:
        separators = str(config.get("split", " ")) + str(config.get("filters", KERAS_TOKENIZER_FILTERS))
        pattern = "[^" + re.escape(separators) + "]+"
    return WordTokenizer(tokens, unk, pattern=pattern, lowercase=lower, pad=0, where=where, limit=limit)


def load_keras(path: Path, vocab: str | None = None, labels: list[str] | None = None):
    """(RecurrentModel, tokenizer, head, labels) of a Keras file."""
    path = Path(path)
    layers, assets = read_keras(path)
    built = build_model(layers, path, labels)
    vocab_size = built.model.config.vocab_size
    if built.text_vectorization is not None:
        if vocab is not None:
            raise CheckpointError(f"{path}: has its own vocabulary (a TextVectorization layer); drop --vocab")
        tokenizer = text_vectorization_tokenizer(built.text_vectorization, assets, vocab_size, str(path))
    elif vocab is not None:
        tokenizer = vocab_file_tokenizer(Path(vocab).expanduser(), vocab_size)
    else:
        raise CheckpointError(
            f"{path}: no vocabulary inside; give --vocab FILE (a Keras Tokenizer JSON or one token a line)"
        )
    # the config records the tokenizer the file turned out to need
    import dataclasses

    built.model.config = dataclasses.replace(built.model.config, tokenizer=tokenizer.kind)
    return built.model, tokenizer, built.head, built.labels


def load_keras_backend(
    path: Path, vocab: str | None = None, labels: list[str] | None = None
) -> RecurrentBackend:
    model, tokenizer, head, labels_ = load_keras(path, vocab, labels)
    return RecurrentBackend(
        model, tokenizer, name=Path(path).stem, source=str(path), head=head, labels=labels_
    )
