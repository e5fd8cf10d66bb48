"""`memviz experiment knn`: at λ = 0 the curve is `memviz eval`'s bits per character; at λ > 0 a
token's probability is the store's neighbours mixed by hand, and the whole curve point is what a
Session recalling from the same store scores; a real SQLite store built here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memviz.backends.registry import load_backend
from memviz.cli import main
from memviz.core.session import RecallSettings, Session
from memviz.experiments import knn
from memviz.experiments.result import read_results
from memviz.memory.store import MemoryStore
from memviz.train.evaluate import bits_per_char

HELD_OUT = "the lazy fox jumps: def f(x): return x + 1\nThe quick dog. return x\n"


@pytest.fixture(scope="module", params=["lstm", "gpt2"])
def model(request, lstm_dir, gpt2_dir, sample_text, tmp_path_factory):
    folder = lstm_dir if request.param == "lstm" else gpt2_dir
    backend = load_backend(str(folder))
    path = tmp_path_factory.mktemp("knn") / f"{request.param}.sqlite"
    store = MemoryStore.open(path, backend=backend, create=True)
    store.add_document(sample_text, "sample", backend, batch_size=64)
    yield folder, backend, store
    store.close()


def test_lambda_zero_is_memviz_eval(model):
    _, backend, store = model
    scores, warnings = knn.score_tokens(backend, store, HELD_OUT, ks=(1, 4))
    assert warnings == []
    expected = bits_per_char(backend, HELD_OUT)  # what `memviz eval` prints
    for i in range(2):
        assert knn.bits_per_char(scores, i, 0.0) == pytest.approx(expected, abs=1e-6)
    grid = knn.bits_per_char_grid(scores, [0.0, 0.5])
    assert grid[:, 0] == pytest.approx([expected, expected], abs=1e-6)
    assert not np.allclose(grid[:, 1], expected)  # the memory changes something at λ > 0


def test_a_tokens_mix_equals_the_neighbours_by_hand(model):
    _, backend, store = model
    k, lam, temperature = 4, 0.3, 2.0
    # k between two others: an exact store is searched once at the largest k and cut (score_tokens)
    scores, _ = knn.score_tokens(backend, store, HELD_OUT, ks=(1, k, 16), temperature=temperature)
    mixed = knn.interpolate(scores.p_lm, scores.p_knn[1], scores.has_neighbours[1], lam)
    # the same text read by hand: the key after each token and the model's own distribution
    session = Session(backend)
    session.feed(HELD_OUT)
    ids = backend.encode(HELD_OUT).ids
    recalled = 0
    for t in range(len(ids) - 1):
        session.step()
        p_lm, target = session.last_distribution, ids[t + 1]
        _, distances, values = store.search(session.keys[t], k)
        weights: dict[int, float] = {}
        for v, d in zip(values, distances, strict=True):
            if v >= 0:
                weights[int(v)] = weights.get(int(v), 0.0) + math.exp(-float(d) / temperature)
        p_knn = weights.get(int(target), 0.0) / sum(weights.values())
        recalled += p_knn > 0
        assert scores.targets[t] == target
        assert scores.p_lm[t] == pytest.approx(p_lm[target], rel=1e-12)
        assert mixed[t] == pytest.approx(lam * p_knn + (1 - lam) * p_lm[target], rel=1e-9), t
    assert recalled > 5  # the neighbours' next tokens are weighed, not only the (1 - λ) share


@pytest.mark.parametrize("lam", [0.25, 1.0])
def test_a_curve_point_is_a_session_recalling_from_the_store(model, lam):
    _, backend, store = model
    k = 4
    scores, _ = knn.score_tokens(backend, store, HELD_OUT, ks=(1, k))
    session = Session(backend, memory=store, recall=RecallSettings(k=k, lam=lam))
    session.feed(HELD_OUT)
    session.run()
    logp = session.trace.array("target_logprob")[:-1].astype(np.float64)  # float32 in the trace
    mixed = knn.interpolate(scores.p_lm, scores.p_knn[1], scores.has_neighbours[1], lam)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(np.log(mixed), logp, rtol=1e-5, atol=1e-5)
    with np.errstate(divide="ignore"):  # λ = 1: a token no neighbour holds has p = 0
        bits = -np.log(mixed).sum() / math.log(2)
    assert knn.bits_per_char(scores, 1, lam) == pytest.approx(bits / scores.characters, rel=1e-12)


def test_a_text_longer_than_the_window_is_cut_and_counted_as_read(gpt2_dir, sample_text, tmp_path):
    backend = load_backend(str(gpt2_dir))  # 128 positions
    with MemoryStore.open(tmp_path / "s.sqlite", backend=backend, create=True) as store:
        store.add_document(sample_text, "sample", backend)
        long_text = HELD_OUT * 12
        scores, warnings = knn.score_tokens(backend, store, long_text, ks=(2,))
    assert any(w.startswith("text cut to 128") for w in warnings)
    assert scores.tokens == 127
    read = backend.tokenizer.decode(backend.encode(long_text).ids[:128])
    assert long_text.startswith(read)
    assert knn.bits_per_char(scores, 0, 0.0) == pytest.approx(bits_per_char(backend, read), abs=1e-6)


def test_a_recurrent_text_over_max_tokens_is_refused(lstm_dir, sample_text, tmp_path):
    from memviz.errors import MemvizError

    backend = load_backend(str(lstm_dir))
    with MemoryStore.open(tmp_path / "s.sqlite", backend=backend, create=True) as store:
        store.add_document(sample_text, "sample", backend)
        with pytest.raises(MemvizError, match="max-tokens"):
            knn.score_tokens(backend, store, HELD_OUT, max_tokens=10)


def test_best_setting_and_gains():
    grid = np.array([[2.0, 1.5, 1.7], [2.0, 1.5, 1.2]])
    assert knn.best_setting(grid, [1, 8], [0.0, 0.5, 1.0]) == (8, 1.0, 1.2)
    tied = np.array([[2.0, 1.5], [2.0, 1.5]])
    assert knn.best_setting(tied, [1, 8], [0.0, 0.5]) == (1, 0.5, 1.5)
    scores = knn.TokenScores(
        targets=np.array([0, 1]),
        p_lm=np.array([0.5, 0.25]),
        ks=(1,),
        p_knn=np.array([[1.0, 0.0]]),
        has_neighbours=np.array([[True, False]]),
        characters=2,
        extra_bits=0.0,
        token_text=["a", "b"],
    )
    gains = knn.token_gains(scores, 0, 0.5)  # 0.75 vs 0.5; no neighbours: p_LM kept
    np.testing.assert_allclose(gains, [math.log2(0.75 / 0.5), 0.0])


def test_experiment_command_writes_the_grid(model, tmp_path, capsys):
    folder, backend, store = model
    text_file = tmp_path / "held_out.txt"
    text_file.write_text(HELD_OUT)
    out = tmp_path / "out"
    code = main(
        ["experiment", "knn", "--model", str(folder), "--memory", str(store.path), "--text-file",
         str(text_file), "--lambdas", "0.5,0.25,1", "--k", "2,8", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = read_results(out)
    assert [(r["k"], r["lambda"]) for r in result.rows] == [
        (k, lam) for k in (2, 8) for lam in (0.0, 0.25, 0.5, 1.0)
    ]
    alone = bits_per_char(backend, HELD_OUT)
    for row in result.rows:
        if row["lambda"] == 0:
            assert row["bits_per_char"] == pytest.approx(alone, abs=1e-6)
        assert row["gain_bits_per_char"] == pytest.approx(alone - row["bits_per_char"], abs=1e-6)
    best = [r for r in result.rows if r["best"]]
    assert len(best) == 1 and best[0]["bits_per_char"] == min(r["bits_per_char"] for r in result.rows)
    part = result.extra["per_model"][result.model_names()[0]]
    assert part["best"]["k"] == best[0]["k"] and part["best"]["lambda"] == best[0]["lambda"]
    assert len(part["token_gain_bits"]) == part["tokens"] == len(backend.encode(HELD_OUT).ids) - 1
    assert sum(part["gain_counts"]) == part["tokens"]
    for ext in ("svg", "pdf", "png"):
        assert (out / f"figure.{ext}").stat().st_size > 1000


def test_another_models_store_is_refused_in_one_line(lstm_dir, gpt2_dir, sample_text, tmp_path, capsys):
    backend = load_backend(str(gpt2_dir))
    with MemoryStore.open(tmp_path / "gpt2.sqlite", backend=backend, create=True) as store:
        store.add_document(sample_text, "sample", backend)
    text_file = tmp_path / "held_out.txt"
    text_file.write_text(HELD_OUT)
    code = main(["experiment", "knn", "--model", str(lstm_dir), "--memory", str(tmp_path / "gpt2.sqlite"),
                 "--text-file", str(text_file), "--out", str(tmp_path / "out"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "belongs to model" in err
