"""The Backend protocol's seams: named internals, batched document keys that leave the backend as it was,
and a memory store that learns everything about keys from the backend without running its model."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import torch

import memviz.backends.lstm as lstm_module
from memviz.backends import hook_points as hp
from memviz.backends.registry import load_backend
from memviz.memory.store import MemoryStore

WINDOW = 32  # the windowed GPT-2's context: documents below are several windows long
ATOL = 1e-5


@pytest.fixture(scope="session")
def shuffled_text(sample_text):
    def shuffled_text(words: int, seed: int = 0) -> str:
        rng = np.random.default_rng(seed)
        return " ".join(rng.choice(sample_text.split(), size=words)) + "\n"

    return shuffled_text


@pytest.fixture(scope="module")
def lstm(lstm_dir):
    return load_backend(str(lstm_dir))


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return load_backend(str(gpt2_dir))


@pytest.fixture(scope="module")
def windowed_gpt2(tmp_path_factory, gpt2_dir_factory):
    folder = gpt2_dir_factory(tmp_path_factory.mktemp("gpt2w") / "window-gpt2", positions=WINDOW, seed=1)
    return load_backend(str(folder))


@pytest.fixture(params=["lstm", "gpt2", "windowed_gpt2"])
def backend(request):
    return request.getfixturevalue(request.param)


def installed_hooks(backend) -> dict[str, set[int]]:
    """Every forward (pre-)hook on every module, by module name (ids of the hook handles).

    transformers 5 installs its own output-capturing hooks on the first call asking for attentions
    (inactive outside such calls); those stay, so hooks are compared with those before, and no hook
    may come from memviz.
    """
    found = {}
    for name, module in backend.model.named_modules():
        hooks = {**module._forward_hooks, **module._forward_pre_hooks}
        for fn in hooks.values():
            assert not getattr(fn, "__module__", "").startswith("memviz"), f"memviz hook left on {name!r}"
        if hooks:
            found[name] = set(hooks)
    return found


def stepped_keys(backend, ids: list[int]) -> np.ndarray:
    backend.reset()
    keys = np.stack([backend.step(t).memory_key for t in ids])
    backend.reset()
    return keys


def windowed_reference_keys(backend, ids: list[int], window: int) -> np.ndarray:
    """Keys of a document longer than the window, stepping token by token: position p < W is read
    from the start; beyond, windows advance by W - W//4 and each key comes from the window that
    first holds it with W//4 tokens of context (worked out here independently of the backend)."""
    overlap, advance = window // 4, window - window // 4
    starts = [0 if p < window else (p - overlap) // advance * advance for p in range(len(ids))]
    by_start = {s: stepped_keys(backend, ids[s : s + window]) for s in sorted(set(starts))}
    return np.stack([by_start[s][p - s] for p, s in enumerate(starts)])


# -- document_keys equals stepping ------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [2048, 7])
def test_lstm_document_keys_equal_stepping(lstm, monkeypatch, chunk, sample_text):
    monkeypatch.setattr(lstm_module, "DOCUMENT_CHUNK", chunk)  # 7: the state carried over many chunks
    ids = lstm.encode(sample_text).ids
    keys = np.stack(list(lstm.document_keys(ids)))
    assert keys.shape == (len(ids) - 1, lstm.memory_key_dim)
    np.testing.assert_allclose(keys, stepped_keys(lstm, ids[:-1]), atol=ATOL, rtol=0)


def test_gpt2_document_keys_equal_stepping_within_the_window(gpt2, sample_text):
    ids = gpt2.encode(sample_text).ids
    assert len(ids) <= gpt2.info.context_size
    keys = np.stack(list(gpt2.document_keys(ids)))
    assert keys.shape == (len(ids) - 1, gpt2.memory_key_dim)
    np.testing.assert_allclose(keys, stepped_keys(gpt2, ids[:-1]), atol=ATOL, rtol=0)


def test_gpt2_document_keys_equal_stepping_across_overlapping_windows(windowed_gpt2, shuffled_text):
    ids = windowed_gpt2.encode(shuffled_text(120)).ids
    assert len(ids) > 3 * WINDOW, "the document must span several windows"
    keys = np.stack(list(windowed_gpt2.document_keys(ids)))
    assert keys.shape == (len(ids) - 1, windowed_gpt2.memory_key_dim)
    reference = windowed_reference_keys(windowed_gpt2, ids[:-1], WINDOW)
    np.testing.assert_allclose(keys, reference, atol=ATOL, rtol=0)
    # and the keys past the first window really differ from a read that starts at the document's start
    assert not np.allclose(keys[WINDOW : 2 * WINDOW], stepped_keys(windowed_gpt2, ids[WINDOW : 2 * WINDOW]))


# -- document_keys leaves the backend as it was ------------------------------------------------------
def test_no_hook_remains_after_steps_or_document_keys(backend, shuffled_text):
    ids = backend.encode(shuffled_text(120)).ids
    backend.reset()
    backend.step(ids[0])
    before = installed_hooks(backend)
    backend.step(ids[1])
    assert installed_hooks(backend) == before, "a step leaves no hook behind"
    keys = backend.document_keys(ids)
    next(keys)  # suspended in the middle of a document (as when adding it is cancelled)
    assert installed_hooks(backend) == before
    for _ in keys:
        pass
    assert installed_hooks(backend) == before
    if backend.info.architecture == "gpt2":  # nothing at all on the key's module
        ln_2 = backend.model.transformer.h[-1].ln_2
        assert not ln_2._forward_hooks and not ln_2._forward_pre_hooks
    backend.reset()


def test_stepping_continues_exactly_after_document_keys(backend, sample_text, shuffled_text):
    ids = backend.encode(sample_text).ids[:24]
    document = backend.encode(shuffled_text(120, seed=3)).ids

    def run(read_document: bool):
        backend.reset()
        outs = [backend.step(t) for t in ids[:12]]
        if read_document:
            assert len(list(backend.document_keys(document))) == len(document) - 1
        position = backend.position
        outs += [backend.step(t) for t in ids[12:]]
        return position, outs

    plain_position, plain = run(False)
    position, outs = run(True)
    assert position == plain_position == 12
    for a, b in zip(plain, outs, strict=True):
        np.testing.assert_array_equal(a.logits.numpy(), b.logits.numpy())
        np.testing.assert_array_equal(a.memory_key, b.memory_key)
        assert a.internals.keys() == b.internals.keys()
        for key in a.internals:
            np.testing.assert_array_equal(a.internals[key], b.internals[key])
    backend.reset()


# -- the store asks, it does not run ----------------------------------------------------------------
def test_creating_a_store_and_adding_a_document_never_steps(backend, tmp_path, monkeypatch, shuffled_text):
    calls = []
    real_step = backend.step
    monkeypatch.setattr(backend, "step", lambda token_id: calls.append(token_id) or real_step(token_id))
    backend.reset()
    store = MemoryStore.open(tmp_path / "m.sqlite", backend=backend, create=True)
    assert calls == []
    assert store.key_dim == backend.memory_key_dim
    meta = dict(sqlite3.connect(store.path).execute("SELECT key, value FROM meta").fetchall())
    assert meta["key_point"] == backend.memory_key_point  # what the stored keys are, said by name
    text = shuffled_text(60)
    result = store.add_document(text, "doc", backend)
    assert calls == [] and backend.position == 0
    ids = backend.encode(text).ids
    assert result.entries == len(ids) - 1
    stored = store.keys(range(1, result.entries + 1))
    np.testing.assert_array_equal(stored, np.stack(list(backend.document_keys(ids))))
    store.close()
    assert len(real_step(ids[0]).memory_key) == backend.memory_key_dim
    backend.reset()


def test_the_memory_store_imports_no_model_code():
    code = "import sys, memviz.memory.store; print(sorted(m for m in ('torch', 'transformers', 'memviz.backends') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- named internals ---------------------------------------------------------------------------------
@pytest.fixture(params=["dense", "qk"])
def storage(request, backend):
    """Transformers step in two ways: dense rows (format 1) or queries and keys (format 2)."""
    choose = getattr(backend, "set_attention_storage", None)
    if choose is None:
        if request.param == "qk":
            pytest.skip("a recurrent model has no attention storage")
        yield request.param
        return
    choose(request.param)
    yield request.param
    choose("dense")


def test_hook_points_name_the_internals_a_step_returns(backend, storage):
    backend.reset()
    out = backend.step(backend.encode("The fox").ids[0])
    backend.reset()
    points = backend.hook_points()
    assert len(points) == len(set(points))
    assert backend.memory_key_point in points
    layers = backend.info.num_layers
    by_key: dict[str, list[int]] = {}
    for name in points:
        template, layer = hp.parse_hook_name(name)
        assert 0 <= layer < layers
        if template not in hp.INTERNAL_OF:  # a point that is only the memory key (GPT-2's ln2.out)
            assert name == backend.memory_key_point
            continue
        key = hp.INTERNAL_OF[template]
        by_key.setdefault(key, []).append(layer)
        np.testing.assert_array_equal(out.internal(name), out.internals[key][layer])
    assert set(by_key) == set(out.internals), "every internal is named, and every name is returned"
    for key, listed in by_key.items():
        assert sorted(listed) == list(range(layers)) == list(range(out.internals[key].shape[0]))
    assert backend.device == "cpu"
    assert out.memory_key.shape == (backend.memory_key_dim,)


def test_lstm_memory_key_is_the_top_layers_hidden_state(lstm):
    assert lstm.memory_key_point == f"rnn.{lstm.info.num_layers - 1}.hidden"
    lstm.reset()
    for t in lstm.encode("The fox").ids:
        out = lstm.step(t)
    lstm.reset()
    np.testing.assert_array_equal(out.memory_key, out.internal(lstm.memory_key_point))
    np.testing.assert_array_equal(out.memory_key, out.internals[hp.HIDDEN][-1])


def test_gpt2_memory_key_is_the_last_blocks_ffn_input(gpt2):
    last = gpt2.info.num_layers - 1
    assert gpt2.memory_key_point == f"blocks.{last}.ln2.out"
    ids = gpt2.encode("The quick brown fox").ids
    captured = []
    handle = gpt2.model.transformer.h[last].ln_2.register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        with torch.inference_mode():
            gpt2.model(input_ids=torch.tensor([ids]), use_cache=False)
    finally:
        handle.remove()
    gpt2.reset()
    keys = np.stack([gpt2.step(t).memory_key for t in ids])
    gpt2.reset()
    np.testing.assert_allclose(keys, captured[0][0].numpy(), atol=ATOL, rtol=0)


def test_hook_names_round_trip_and_unknown_names_are_refused():
    for template in (hp.ATTN_PATTERN, hp.LN2_OUT, hp.RNN_GATES, hp.RNN_CELL, hp.RNN_HIDDEN):
        assert hp.parse_hook_name(hp.hook_name(template, 11)) == (template, 11)
    assert hp.hook_name(hp.RNN_GATES, 2) == "rnn.2.gates"
    for bad in ("rnn.gates", "rnn.x.gates", "blocks.0.mlp.out", "transformer.h.0.ln_2"):
        with pytest.raises(ValueError, match="not a hook point"):
            hp.parse_hook_name(bad)
    # the internals' keys are the Trace's columns: they never change
    assert (hp.GATES, hp.CELL, hp.HIDDEN, hp.ATTENTION_ROW) == ("gates", "cell", "hidden", "attention_row")
