"""Attention rebuilt from stored queries and keys (trace format 2) equals transformers' eager full
forward pass, for every family of test_transformer_families: 1e-4 with float32 storage, 2e-3 with
float16; every read call (one row, one step's rows, a matrix, the dense tensor) gives the same
numbers; the rebuild itself against a hand computation (scale, soft-cap, causal and sliding masks,
grouped key/value heads), independent of the store's code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memviz.backends.registry import load_backend
from memviz.core.attention_store import AttentionLayout, QKStore
from memviz.core.npy_spool import FrozenRows
from memviz.core.session import Session
from memviz.core.trace import StepRecord, Trace
from memviz.errors import MemvizError
from tests.test_transformer_families import (
    TEXT,
    WINDOW,
    family_configs,
    full_pass,
    make_tokenizer,
    save_family,
)

FAMILIES = sorted(family_configs(300))
DENSE_FAMILIES = {"gpt_neo": "AttentionInterface"}  # family -> what the manifest's reason names


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict[str, Path]:
    tokenizer = make_tokenizer()
    root = tmp_path_factory.mktemp("rebuild")
    configs = family_configs(len(tokenizer))
    return {name: save_family(name, root / name, configs[name], tokenizer) for name in configs}


def eager_attention(folder: Path, backend, ids: list[int]) -> np.ndarray:
    key_module = backend.family.key_module.format(last=backend.info.num_layers - 1)
    return full_pass(folder, ids, key_module, backend.family.key_from)[0]  # [L, A, T, T]


def read_run(folder: Path, **options) -> tuple[Session, Trace]:
    session = Session(load_backend(str(folder)), **options)
    session.feed(TEXT)
    session.run()
    return session, session.trace


@pytest.mark.parametrize("name", FAMILIES)
def test_rebuilt_rows_equal_the_eager_full_pass(name, family_dirs):
    session, trace = read_run(family_dirs[name])
    backend = session.backend
    T = len(trace)
    assert T >= 30
    expected = eager_attention(family_dirs[name], backend, trace.token_ids)
    L, A = backend.info.num_layers, backend.info.num_heads
    manifest = trace.manifest()
    if name in DENSE_FAMILIES:
        assert trace.attention_storage == "dense" and manifest["format_version"] == 1
        assert DENSE_FAMILIES[name] in manifest["attention_storage_reason"]
    else:
        assert trace.attention_storage == "qk" and manifest["format_version"] == 2
        layout = trace.attention_layout
        assert (layout.num_layers, layout.num_heads, layout.num_kv_heads) == (L, A, backend.info.num_kv_heads)
        assert [layout.kv_head_of(h) for h in range(A)] == [backend.info.kv_head_of(h) for h in range(A)]
        assert layout.sliding_window == backend.info.sliding_window
        # the scale and soft-cap recorded are those the model's attention calls were given
        for layer, (scaling, softcap) in backend.last_seen.items():
            assert scaling == pytest.approx(layout.scale[layer], rel=1e-12)
            assert softcap == layout.softcap[layer]
        assert trace.attention_files  # q and k went to disk as the run went
    worst = 0.0
    for t in range(T):
        rows = trace.attention_rows_at(t)
        assert rows.shape == (L, A, t + 1)
        worst = max(worst, float(np.abs(rows - expected[:, :, t, : t + 1]).max()))
    assert worst < 1e-4, f"{name}: rows differ by {worst:.2e}"
    for layer, head in ((0, 0), (L - 1, A - 1), (1, 2)):
        np.testing.assert_allclose(
            trace.attention_matrix(layer, head), expected[layer, head], atol=1e-4, rtol=0
        )
        np.testing.assert_allclose(
            trace.attention_row(T - 1, layer, head), expected[layer, head, T - 1], atol=1e-4, rtol=0
        )
    np.testing.assert_allclose(trace.attention_tensor(), expected, atol=1e-4, rtol=0)
    assert expected[:, :, -1].max() > 3.0 / T  # sharp heads: a wrong rebuild could not pass
    # each head's expected distance back, recorded while stepping, against the eager rows
    back = (np.arange(T)[:, None] - np.arange(T)[None, :]).clip(min=0)
    distance = (expected.astype(np.float64) * back).sum(-1).transpose(2, 0, 1)  # [T, L, A]
    if name in DENSE_FAMILIES:
        assert not trace.has("attention_distance")
    else:
        np.testing.assert_allclose(trace.array("attention_distance"), distance, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(trace.mean_attention_distance(), distance.mean(0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", [n for n in FAMILIES if n not in DENSE_FAMILIES])
def test_float16_storage_is_within_2e_3(name, family_dirs):
    """Queries kept in float16 (what a large model's trace uses; keys stay float32): rows within
    2e-3 of the eager pass."""
    backend = load_backend(str(family_dirs[name]))
    backend.set_attention_storage("qk")
    trace = Trace.for_model(backend.info, query_dtype=np.float16, attention_layout=backend.attention_layout)
    ids = backend.encode(TEXT).ids[:40]
    for token in ids:
        out = backend.step(token)
        trace.append(
            StepRecord(token, "x", False, np.zeros(1, np.int64), np.ones(1, np.float32), out.internals)
        )
    assert [np.load(f).dtype for f in trace.attention_files] == [np.float16, np.float32]
    expected = eager_attention(family_dirs[name], backend, ids)
    np.testing.assert_allclose(trace.attention_tensor(), expected, atol=2e-3, rtol=0)


def test_every_read_call_gives_the_same_numbers(family_dirs):
    """One head's row, a step's rows and any block of the matrix agree bit for bit (the sums run in
    float64), so a panel's incremental cache equals a fresh read."""
    _session, trace = read_run(family_dirs["qwen2"])
    dense = trace.attention_tensor()
    T = len(trace)
    for t in (0, 5, T - 1):
        np.testing.assert_array_equal(trace.attention_rows_at(t), dense[:, :, t, : t + 1])
        np.testing.assert_array_equal(trace.attention_row(t, 1, 3), dense[1, 3, t, : t + 1])
    for start, stop in ((0, 1), (3, 9), (T - 2, T)):
        np.testing.assert_array_equal(
            trace.attention_matrix(1, 1, start, stop), dense[1, 1, start:stop, :stop]
        )
    # layer 1 of this Qwen2 slides: nothing before its window, rows sum to 1
    assert not dense[1, :, T - 1, : T - WINDOW].any() and dense[0, :, T - 1, : T - WINDOW].any()
    np.testing.assert_allclose(dense.sum(-1), 1.0, atol=1e-5)


def test_interventions_that_change_the_keys_seen_keep_dense_rows(family_dirs):
    from memviz.core.interventions import parse_all

    session, trace = read_run(family_dirs["llama"], interventions=parse_all(["mask:2-4"]))
    assert trace.attention_storage == "dense" and "mask:" in trace.manifest()["attention_storage_reason"]
    assert not trace.attention_rows_at(10)[:, :, 2:5].any()
    # the distance recorded while stepping under context:W (q = W queries, positions from 0) and
    # mask:A-B equals the one from the run's own rows
    for spec in ("context:5", "mask:2-4"):
        _s, run = read_run(family_dirs["llama"], interventions=parse_all([spec]))
        rows = run.attention_tensor().astype(np.float64)
        T = len(run)
        back = (np.arange(T)[:, None] - np.arange(T)[None, :]).clip(min=0)
        expected = (rows * back).sum(-1).transpose(2, 0, 1)
        np.testing.assert_allclose(run.array("attention_distance"), expected, rtol=1e-5, atol=1e-5)
    # head ablation leaves each head's own pattern as the model computes it: q/k, equal to dense rows
    _s, qk = read_run(family_dirs["llama"], interventions=parse_all(["head:0.1=zero"]))
    _s, dense = read_run(
        family_dirs["llama"], interventions=parse_all(["head:0.1=zero"]), dense_attention=True
    )
    assert (qk.attention_storage, dense.attention_storage) == ("qk", "dense")
    np.testing.assert_allclose(qk.attention_tensor(), dense.attention_tensor(), atol=1e-5, rtol=0)


# -- the rebuild against a hand computation ----------------------------------------------------------
def hand_row(q, keys, scale, window, softcap):
    """softmax over keys 0..t of (q.k) * scale, soft-capped, with keys before the window at -inf."""
    t = len(keys) - 1
    logits = np.array([float(np.dot(q.astype(np.float64), k.astype(np.float64))) * scale for k in keys])
    if softcap:
        logits = np.tanh(logits / softcap) * softcap
    if window:
        logits[: max(0, t - window + 1)] = -np.inf
    e = np.exp(logits - logits.max())
    return e / e.sum()


@pytest.mark.parametrize(
    ("window", "softcap", "kv"), [(None, None, 4), (3, None, 2), (None, 2.0, 1), (5, 1.5, 2)]
)
def test_store_rebuild_equals_a_hand_computation(window, softcap, kv):
    rng = np.random.default_rng(7)
    T, L, A, d = 12, 2, 4, 8
    layout = AttentionLayout(A, kv, d, (0.4, 1.3), (None, window), (None, softcap))
    q = rng.normal(0, 1.5, (T, L, A, d)).astype(np.float32)
    k = rng.normal(0, 1.5, (T, L, kv, d)).astype(np.float32)
    store = QKStore(layout, FrozenRows(q), FrozenRows(k))
    for t in range(T):
        for layer in range(L):
            for head in range(A):
                group = head // (A // kv)
                expected = hand_row(
                    q[t, layer, head],
                    k[: t + 1, layer, group],
                    layout.scale[layer],
                    layout.sliding_window[layer],
                    layout.softcap[layer],
                )
                np.testing.assert_allclose(store.row(t, layer, head), expected, atol=1e-6, rtol=0)
                np.testing.assert_allclose(store.rows_at(t)[layer, head], expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(store.matrix(1, 3, 0, T).sum(-1), 1.0, atol=1e-6)
    assert not np.triu(store.matrix(1, 3, 0, T), 1).any()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(num_heads=3), "not a multiple"),
        (dict(scale=[0.5]), "differ in length"),
        (dict(scale=[0.5, float("nan")]), "not a positive number"),
        (dict(sliding_window=[0, None]), "not a window"),
        (dict(softcap="5"), "not a list"),
        (dict(head_dim=True), "not a count"),
    ],
)
def test_a_broken_layout_is_one_line(change, message):
    good = AttentionLayout(4, 2, 8, (0.5, 0.5), (None, 4), (None, None)).as_manifest()
    with pytest.raises(MemvizError, match=message) as caught:
        AttentionLayout.from_manifest({**good, **change}, "x.memviz")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("x.memviz: ")


class GrowingRows:
    """An in-RAM source with a spool's face (`view`, `len`, `append`): a run that goes on."""

    def __init__(self, row_shape, dtype=np.float32) -> None:
        self.array = np.zeros((0, *row_shape), dtype)

    def append(self, row) -> None:
        self.array = np.concatenate([self.array, np.asarray(row, self.array.dtype)[None]])

    def view(self) -> np.ndarray:
        return self.array

    def __len__(self) -> int:
        return len(self.array)


@pytest.mark.parametrize("budget", [None, "one layer", "none"])
def test_the_key_cache_changes_no_number(budget, monkeypatch):
    """The float32 key cache filled all layers at once, layer by layer, grown while a run goes on,
    or too small to hold even one layer: the same rows, bit for bit, and all equal to the hand
    computation (float16 queries, a sliding layer, grouped heads)."""
    from memviz.core import attention_store

    rng = np.random.default_rng(3)
    T, L, A, kv, d = 150, 3, 4, 2, 8
    layout = AttentionLayout(A, kv, d, (0.4, 0.3, 0.5), (None, 7, None), (None, None, 3.0))
    q = rng.normal(0, 1.5, (T, L, A, d)).astype(np.float16)
    k = rng.normal(0, 1.5, (T, L, kv, d)).astype(np.float32)
    reference = QKStore(layout, FrozenRows(q), FrozenRows(k))
    expected = {t: reference.rows_at(t) for t in (0, 1, 63, 64, 65, 99, T - 1)}
    if budget == "one layer":
        monkeypatch.setattr(attention_store, "KEY_CACHE_BYTES", kv * d * 4 * 192)
    elif budget == "none":
        monkeypatch.setattr(attention_store, "KEY_CACHE_BYTES", 16)
    growing = QKStore(layout, GrowingRows((L, A, d), np.float16), GrowingRows((L, kv, d)))
    for t in range(T):
        growing.append(q[t], k[t])
        if t in expected:  # the cache grows as the run does, one step's keys at a time
            np.testing.assert_array_equal(growing.rows_at(t), expected[t])
            np.testing.assert_array_equal(growing.row(t, 1, 3), expected[t][1, 3])
    frozen = QKStore(layout, FrozenRows(q), FrozenRows(k))
    for t in sorted(expected, reverse=True):  # filled at the last step first, then read shorter
        np.testing.assert_array_equal(frozen.rows_at(t), expected[t])
        np.testing.assert_array_equal(frozen.matrix(2, 1, t, t + 1)[0], expected[t][2, 1])
    held = sum(b.nbytes for b, _ in frozen._keys32.values())
    assert held <= attention_store.KEY_CACHE_BYTES and (held > 0) == (budget != "none")
    for t in (64, T - 1):
        for layer in range(L):
            for head in range(A):
                want = hand_row(
                    q[t, layer, head],
                    k[: t + 1, layer, head // (A // kv)],
                    layout.scale[layer],
                    layout.sliding_window[layer],
                    layout.softcap[layer],
                )
                np.testing.assert_allclose(expected[t][layer, head], want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("fits", [True, False])
def test_a_run_with_a_context_window_makes_its_key_cache_once(fits, monkeypatch):
    """A growing run told its context window (`capacity`) makes each layer's key buffer that long
    at its first read, so no step waits for a growth copy under the lock; the rows stay bit for bit
    those of a store without it, and RAM counts the keys written, not the room reserved. When the
    whole window would not fit in KEY_CACHE_BYTES the buffers grow as before."""
    from memviz.core import attention_store

    rng = np.random.default_rng(5)
    T, L, A, kv, d = 300, 2, 4, 2, 8
    layout = AttentionLayout(A, kv, d, (0.4, 0.3), (None, 9), (None, None))
    q = rng.normal(0, 1.5, (T, L, A, d)).astype(np.float32)
    k = rng.normal(0, 1.5, (T, L, kv, d)).astype(np.float32)
    if not fits:
        monkeypatch.setattr(attention_store, "KEY_CACHE_BYTES", kv * d * 4 * (T + 64) * 3 // 2)
    plain = QKStore(layout, GrowingRows((L, A, d)), GrowingRows((L, kv, d)))
    told = QKStore(layout, GrowingRows((L, A, d)), GrowingRows((L, kv, d)), capacity=T)
    buffers = set()
    for t in range(T):
        for store in (plain, told):
            store.append(q[t], k[t])
        if t % 7 == 0 or t == T - 1:
            np.testing.assert_array_equal(told.rows_at(t), plain.rows_at(t))
            np.testing.assert_array_equal(told.row(t, 1, 2), plain.row(t, 1, 2))
            buffers.add(id(told._keys32[1][0]))  # layer 1: the one just read
    assert (len(buffers) == 1) == fits  # one buffer for the whole run: never grown, never copied
    if fits:
        assert told._keys32[1][0].shape[2] >= T + 1
    # RAM: the keys written (T of them per layer), the same figure with or without the room
    keys_written = sum(filled for _, filled in told._keys32.values()) * kv * d * 4
    assert keys_written == (L if fits else 1) * T * kv * d * 4
    assert told.ram_nbytes - sum(r.nbytes for r in told._rows.values()) == keys_written
