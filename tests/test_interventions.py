"""Interventions (issue 17): each one, stepped by the backends, against an independent computation on
real tiny models, and the manifest and the command line around them.

- head:L.H=zero equals the eager full forward of a copy of the model whose output projection has that
  head's input slice zeroed in its weights (no hooks).
- mask:A-B equals the eager full forward with a hand-built 4D mask that hides keys A..B.
- context:W equals running the last W tokens alone, from position 0.
- cell/hidden clamps equal torch's nn.LSTMCell / nn.GRUCell stepped by hand with the clamp; reset:S
  and context:W equal the model's own nn.LSTM / nn.GRU over the tokens from S / the last W alone.
Every intervention also moves the output away from the plain run, so one that did nothing fails.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from memviz import cli
from memviz.backends.registry import load_backend
from memviz.core.interventions import (
    Clamp,
    ContextWindow,
    HeadAblation,
    Reset,
    SpanMask,
    from_manifest,
    parse_all,
    to_manifest,
)
from memviz.core.session import Session
from memviz.core.trace import Trace

TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x"
ATOL_T, ATOL_R = 1e-4, 1e-5
MOVES = 1e-3  # an intervention must change the logits by more than this somewhere


def sharpen(model: torch.nn.Module, seed: int = 1) -> None:
    """At init GPT-2's heads are near uniform and their outputs tiny; sharpened, a head matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "wpe" not in name:
                p.normal_(0, 0.3, generator=gen)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory, gpt2_dir_factory):
    backend = load_backend(str(gpt2_dir_factory(tmp_path_factory.mktemp("iv") / "gpt2")), device="cpu")
    sharpen(backend.model)
    return backend


@pytest.fixture(scope="module")
def llama(tmp_path_factory, gpt2_dir_factory):
    """A tiny Llama with grouped-query attention (4 query heads, 2 key/value heads)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("iv")
    tokenizer = AutoTokenizer.from_pretrained(gpt2_dir_factory(root / "tok"))
    config = LlamaConfig(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=2,
        intermediate_size=64,
        max_position_embeddings=128,
        vocab_size=len(tokenizer),
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    sharpen(model)
    model.save_pretrained(root / "llama")
    tokenizer.save_pretrained(root / "llama")
    return load_backend(str(root / "llama"), device="cpu")


@pytest.fixture(scope="module")
def rnn_dirs(tmp_path_factory, rnn_dir_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("iv")
    return {cell: rnn_dir_factory(root / cell, cell=cell, sizes=(9, 5, 7)) for cell in ("lstm", "gru")}


def stepped(backend, specs: str | list[str] = ()) -> tuple[np.ndarray, list[np.ndarray], list[dict]]:
    """Logits [T, V], attention rows (transformers) and internals of every step under the specs."""
    backend.reset()
    backend.set_interventions(parse_all([specs] if isinstance(specs, str) else specs))
    try:
        logits, rows, internals = [], [], []
        for token in backend.encode(TEXT).ids:
            out = backend.step(token)
            logits.append(out.logits.numpy())
            rows.append(out.internals.get("attention_row"))
            internals.append(out.internals)
        return np.stack(logits), rows, internals
    finally:
        backend.set_interventions(())
        backend.reset()


def ids_of(backend) -> torch.Tensor:
    return torch.tensor([backend.encode(TEXT).ids])


def full_forward(model, ids: torch.Tensor, mask: torch.Tensor | None = None):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, output_attentions=True, use_cache=False)


def assert_rows(rows: list[np.ndarray], attentions, atol: float = ATOL_T) -> None:
    """Each step's recorded row [L, A, t+1] is the full forward's query row t."""
    for t, row in enumerate(rows):
        want = np.stack([a[0, :, t, : t + 1].numpy() for a in attentions])
        np.testing.assert_allclose(row.astype(np.float32), want, atol=atol)


def assert_moved(a: np.ndarray, b: np.ndarray) -> None:
    assert np.abs(a - b).max() > MOVES, "the intervention changed nothing"


# -- transformers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, layer, head", [("gpt2", 1, 2), ("llama", 0, 3)])
def test_head_ablation_equals_zeroed_projection_weights(request, name, layer, head):
    backend = request.getfixturevalue(name)
    logits, rows, _ = stepped(backend, f"head:{layer}.{head}=zero")
    reference = copy.deepcopy(backend.model)
    hd = backend.info.hidden_size // backend.info.num_heads
    with torch.no_grad():
        if name == "gpt2":  # Conv1D: weight [in, out]
            reference.transformer.h[layer].attn.c_proj.weight[head * hd : (head + 1) * hd] = 0
        else:  # nn.Linear: weight [out, in]
            reference.model.layers[layer].self_attn.o_proj.weight[:, head * hd : (head + 1) * hd] = 0
    out = full_forward(reference, ids_of(backend))
    np.testing.assert_allclose(logits, out.logits[0].numpy(), atol=ATOL_T)
    assert_rows(rows, out.attentions)
    assert_moved(logits, stepped(backend)[0])


def test_ablating_two_heads_and_the_layers_above(gpt2):
    logits, _, _ = stepped(gpt2, ["head:0.1=zero", "head:0.3=zero", "head:2.0=zero"])
    reference = copy.deepcopy(gpt2.model)
    with torch.no_grad():
        for layer, head in ((0, 1), (0, 3), (2, 0)):
            reference.transformer.h[layer].attn.c_proj.weight[head * 8 : (head + 1) * 8] = 0
    np.testing.assert_allclose(logits, full_forward(reference, ids_of(gpt2)).logits[0].numpy(), atol=ATOL_T)


def hiding(n: int, spans: list[tuple[int, int]], dtype=torch.float32) -> torch.Tensor:
    """A 4D additive mask [1, 1, n, n]: causal, and keys in the spans hidden from every query."""
    allowed = torch.ones(n, n).tril().bool()
    for a, b in spans:
        allowed[:, a : b + 1] = False
    return torch.where(allowed, 0.0, torch.finfo(dtype).min).view(1, 1, n, n)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_mask_equals_a_forward_with_those_keys_hidden(request, name):
    backend = request.getfixturevalue(name)
    logits, rows, _ = stepped(backend, ["mask:3-6", "mask:10-10"])
    ids = ids_of(backend)
    out = full_forward(backend.model, ids, hiding(ids.shape[1], [(3, 6), (10, 10)]))
    np.testing.assert_allclose(logits, out.logits[0].numpy(), atol=ATOL_T)
    assert_rows(rows, out.attentions)
    for t, row in enumerate(rows):  # no query reads the hidden keys; position 0 is always read
        assert np.all(row[..., 3 : min(t, 6) + 1] == 0) and np.all(row[..., 10 : min(t, 10) + 1] == 0)
    assert_moved(logits, stepped(backend)[0])


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_context_window_equals_the_last_w_tokens_alone(request, name):
    backend = request.getfixturevalue(name)
    W = 5
    logits, rows, _ = stepped(backend, f"context:{W}")
    ids = ids_of(backend)
    for t in range(ids.shape[1]):
        start = max(0, t + 1 - W)
        out = full_forward(backend.model, ids[:, start : t + 1])  # positions from 0
        np.testing.assert_allclose(logits[t], out.logits[0, -1].numpy(), atol=ATOL_T)
        want = np.stack([a[0, :, -1, :].numpy() for a in out.attentions])
        np.testing.assert_allclose(rows[t][..., start:].astype(np.float32), want, atol=ATOL_T)
        assert np.all(rows[t][..., :start] == 0)  # what the window left behind is not read
    assert_moved(logits, stepped(backend)[0])


def test_no_hook_is_left_on_the_model_and_keys_are_the_models(gpt2):
    plain = list(gpt2.document_keys(gpt2.encode(TEXT).ids))
    gpt2.set_interventions(parse_all(["head:0.0=zero", "head:1.1=zero"]))
    try:
        gpt2.reset()
        gpt2.step(gpt2.encode(TEXT).ids[0])
        modules = [gpt2.model.transformer.h[k].attn.c_proj for k in range(3)]
        assert not any(m._forward_pre_hooks for m in modules)
        keys = list(gpt2.document_keys(gpt2.encode(TEXT).ids))  # the store reads the model as it is
        np.testing.assert_array_equal(np.stack(keys), np.stack(plain))
    finally:
        gpt2.set_interventions(())
        gpt2.reset()


def test_every_transformer_family_names_an_output_projection():
    from memviz.backends.families import TRANSFORMER, families
    from memviz.backends.transformer_interventions import OUTPUT_PROJECTION

    assert {f.name for f in families(TRANSFORMER)} <= set(OUTPUT_PROJECTION)


# -- recurrent ------------------------------------------------------------------------------------
def hand_stepped(folder: Path, ids: list[int], clamps: list[tuple[str, int, int, float]]) -> np.ndarray:
    """torch's own LSTMCell / GRUCell with the model's weights, one token at a time, clamping each
    layer's new c (then h = o*tanh(c)) or h before the layer above reads it. Logits [T, V]."""
    from memviz.backends.recurrent import load_recurrent

    model, _, config = load_recurrent(folder)
    cells = []
    for layer in model.layers:
        kind = torch.nn.LSTMCell if config.cell == "lstm" else torch.nn.GRUCell
        cell = kind(layer.input_size, layer.hidden_size)
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(cell, n, torch.nn.Parameter(getattr(layer, f"{n}_l0").detach().clone()))
        cells.append(cell)
    h = [torch.zeros(1, H) for H in config.layer_sizes]
    c = [torch.zeros(1, H) for H in config.layer_sizes]
    out = []
    with torch.no_grad():
        for token in ids:
            x = model.embedding.weight[token].unsqueeze(0)
            for k, cell in enumerate(cells):
                if config.cell == "lstm":
                    new_h, new_c = cell(x, (h[k], c[k]))
                    cell_clamps = [(u, v) for kind, k2, u, v in clamps if kind == "cell" and k2 == k]
                    if cell_clamps:
                        gates = x @ cell.weight_ih.T + cell.bias_ih + h[k] @ cell.weight_hh.T + cell.bias_hh
                        o = torch.sigmoid(gates.chunk(4, dim=1)[3])
                        for u, v in cell_clamps:
                            new_c[0, u] = v
                        new_h = o * torch.tanh(new_c)
                    c[k] = new_c
                else:
                    new_h = cell(x, h[k])
                for kind, k2, u, v in clamps:
                    if kind == "hidden" and k2 == k:
                        new_h = new_h.clone()
                        new_h[0, u] = v
                h[k] = x = new_h
            out.append(model.head(x)[0].numpy())
    return np.stack(out)


@pytest.mark.parametrize(
    "cell, specs",
    [
        ("lstm", ["cell:0.3=2.5"]),
        ("lstm", ["hidden:1.4=-0.9", "cell:2.0=-3"]),
        ("gru", ["hidden:0.8=0.75", "hidden:2.6=-1"]),
    ],
)
def test_clamps_equal_a_hand_stepped_cell(rnn_dirs, cell, specs):
    backend = load_backend(str(rnn_dirs[cell]))
    logits, _, internals = stepped(backend, specs)
    parsed = parse_all(specs)
    clamps = [(s.kind, s.layer, s.unit, s.value) for s in parsed]
    want = hand_stepped(rnn_dirs[cell], backend.encode(TEXT).ids, clamps)
    np.testing.assert_allclose(logits, want, atol=ATOL_R)
    for s in parsed:  # what the trace records is the clamped state
        assert all(step[s.kind][s.layer, s.unit] == np.float32(s.value) for step in internals)
    assert_moved(logits, stepped(backend)[0])


def whole_run(folder: Path, ids: list[int]) -> np.ndarray:
    """The model's own nn.LSTM / nn.GRU over ids from a zero state: logits of the last token."""
    from memviz.backends.recurrent import load_recurrent

    model, _, _ = load_recurrent(folder)
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids]))
    return logits[0, -1].numpy()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_reset_and_context_equal_reading_from_there(rnn_dirs, cell):
    backend = load_backend(str(rnn_dirs[cell]))
    ids = backend.encode(TEXT).ids
    S, W = 12, 6
    reset, _, _ = stepped(backend, f"reset:{S}")
    window, _, _ = stepped(backend, f"context:{W}")
    both, _, _ = stepped(backend, [f"reset:{S}", f"context:{W}"])
    for t in range(len(ids)):
        from_s = ids[S : t + 1] if t >= S else ids[: t + 1]
        np.testing.assert_allclose(reset[t], whole_run(rnn_dirs[cell], from_s), atol=ATOL_R)
        np.testing.assert_allclose(
            window[t], whole_run(rnn_dirs[cell], ids[max(0, t + 1 - W) : t + 1]), atol=ATOL_R
        )
        start = max(t + 1 - W, S if t >= S else 0)  # a window does not reach back past a reset
        np.testing.assert_allclose(both[t], whole_run(rnn_dirs[cell], ids[start : t + 1]), atol=ATOL_R)
    plain = stepped(backend)[0]
    np.testing.assert_allclose(reset[:S], plain[:S], atol=ATOL_R)
    assert_moved(reset[S:], plain[S:])
    assert_moved(window, plain)


# -- specs, manifest, command line ----------------------------------------------------------------
def test_specs_parse_into_their_fields():
    specs = parse_all(
        ["head:1.2=zero", "cell:0.3=2.5", "hidden:2.0=-1e-3", "reset:7", "context:16", "mask:1-4"]
    )
    assert specs == (
        HeadAblation(1, 2),
        Clamp("cell", 0, 3, 2.5),
        Clamp("hidden", 2, 0, -1e-3),
        Reset(7),
        ContextWindow(16),
        SpanMask(1, 4),
    )
    assert parse_all([s.spec for s in specs]) == specs


def test_the_manifest_round_trips_the_specs(gpt2, rnn_dirs, tmp_path):
    for backend, texts in (
        (gpt2, ["head:1.2=zero", "mask:2-4"]),
        (load_backend(str(rnn_dirs["lstm"])), ["cell:0.3=2.5", "reset:5", "context:9"]),
    ):
        specs = parse_all(texts)
        session = Session(backend, interventions=specs)
        session.feed(TEXT[:20])
        session.run()
        path = session.trace.save(tmp_path / f"{backend.info.architecture}.memviz")
        manifest = Trace.load(path).manifest()
        assert manifest["interventions"] == to_manifest(specs)
        assert [item["spec"] for item in manifest["interventions"]] == texts
        assert from_manifest(manifest["interventions"]) == specs
        session.reset()  # a new run of the session keeps them
        assert from_manifest(session.trace.manifest()["interventions"]) == specs
        Session(backend)  # a later session without any gives the backend back as it was
    plain = Session(gpt2)
    assert plain.trace.manifest()["interventions"] == []


def test_trace_command_records_and_applies_the_specs(gpt2_dir_factory, tmp_path):
    folder = gpt2_dir_factory(tmp_path / "gpt2")
    base = ["trace", "--model", str(folder), "--text", TEXT, "--device", "cpu"]
    assert cli.main([*base, "--out", str(tmp_path / "plain.memviz")]) == 0
    args = ["--intervene", "head:1.2=zero", "--intervene", "context:4"]
    assert cli.main([*base, *args, "--out", str(tmp_path / "iv.memviz")]) == 0
    plain, iv = Trace.load(tmp_path / "plain.memviz"), Trace.load(tmp_path / "iv.memviz")
    assert [s.spec for s in from_manifest(iv.manifest()["interventions"])] == ["head:1.2=zero", "context:4"]
    assert plain.manifest()["interventions"] == []
    for t in range(len(iv)):  # a 4-token window: no query reads further back than 3 positions
        rows = iv.attention_rows_at(t)
        assert np.all(rows[..., : max(0, t - 3)] == 0) and np.any(rows[..., max(0, t - 3) :] > 0)
    # an untrained GPT-2 is near uniform: the change is small, but there
    assert np.abs(iv.array("topk_probs") - plain.array("topk_probs")).max() > 1e-6


@pytest.mark.parametrize(
    "model, spec, says",
    [
        ("gpt2", "head:1=zero", "expected head:L.H=zero"),
        ("gpt2", "bogus:1", "unknown intervention"),
        ("gpt2", "head:0.1=half", "only be set to zero"),
        ("lstm", "cell:0.1=abc", "not a number"),
        ("lstm", "hidden:0.1=inf", "finite"),
        ("gpt2", "context:0", "at least 1"),
        ("gpt2", "mask:0-3", "position 0 is never masked"),
        ("gpt2", "mask:5-3", "before it starts"),
        ("gpt2", "head:3.0=zero", "layer 3 out of range"),
        ("gpt2", "head:0.4=zero", "head 4 out of range"),
        ("gpt2", "cell:0.0=1", "for recurrent models"),
        ("gpt2", "reset:3", "for recurrent models"),
        ("lstm", "head:0.0=zero", "for transformers"),
        ("lstm", "mask:1-2", "for transformers"),
        ("lstm", "hidden:1.5=0", "unit 5 out of range: layer 1 has units 0..4"),
        ("lstm", "cell:3.0=0", "layer 3 out of range"),
        ("gru", "cell:0.0=1", "no cell state"),
    ],
)
def test_bad_specs_are_one_line_and_exit_2(model, spec, says, rnn_dirs, gpt2_dir_factory, tmp_path, capsys):
    folder = gpt2_dir_factory(tmp_path / "gpt2") if model == "gpt2" else rnn_dirs[model]
    out = tmp_path / "t.memviz"
    args = ["trace", "--model", str(folder), "--text", "The fox", "--intervene", spec, "--out", str(out)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("memviz: error: --intervene")
    assert repr(spec) in err and says in err
    assert not out.exists()  # refused before the run


def test_combinations_refused(rnn_dirs, capsys, tmp_path, gpt2_dir_factory):
    folder = gpt2_dir_factory(tmp_path / "gpt2")
    for specs, says in (
        (["context:4", "context:8"], "only one context window"),
        (["mask:1-2", "mask:1-2"], "given twice"),
        (["mask:1-2", "context:8"], "cannot be combined"),
    ):
        args = ["trace", "--model", str(folder), "--text", "The fox", "--out", str(tmp_path / "t.memviz")]
        for s in specs:
            args += ["--intervene", s]
        assert cli.main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err
