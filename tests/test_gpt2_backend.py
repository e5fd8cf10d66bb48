"""The GPT-2 backend's KV-cache stepping against transformers' eager full forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_gpt2_dir
from transformers import GPT2LMHeadModel

from memviz.backends.gpt2 import ContextFullError, GPT2Backend
from memviz.backends.registry import load_backend
from memviz.core.sampling import SamplingConfig
from memviz.core.session import Session
from memviz.errors import MemvizError

ATOL = 1e-4
TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\nThe lazy dog sleeps."


def sharpen_gpt2(folder, scale: float = 6.0, seed: int = 5):
    """Scale the attention projections so that heads attend sharply (random init is near-uniform,
    which a wrong implementation could still match)."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel.from_pretrained(folder)
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight.mul_(scale)
            block.attn.c_attn.bias.normal_(0, 0.5)
        model.transformer.wpe.weight.mul_(scale)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["default", "sharp"])
def gpt2_folder(request, gpt2_dir, tmp_path_factory):
    if request.param == "default":
        return gpt2_dir
    return sharpen_gpt2(make_gpt2_dir(tmp_path_factory.mktemp("gpt2-sharp") / "sharp-gpt2", seed=2))


def full_forward(folder, ids: list[int]):
    """Eager full pass over the whole sequence: attentions [L,A,T,T], logits [T,V], ln_2 output [T,D]."""
    model = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    captured = {}
    model.transformer.h[-1].ln_2.register_forward_hook(lambda m, i, o: captured.__setitem__("ln2", o))
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_attentions=True)
    attention = torch.stack([a[0] for a in out.attentions]).numpy()
    return attention, out.logits[0].numpy(), captured["ln2"][0].numpy()


def test_kv_cache_stepping_equals_full_forward(gpt2_folder):
    backend = load_backend(str(gpt2_folder))
    assert isinstance(backend, GPT2Backend)
    assert (backend.info.num_layers, backend.info.num_heads) == (3, 4)
    ids = backend.encode(TEXT).ids
    T, L, A = len(ids), 3, 4
    assert T > 10

    inputs: list[tuple[int, ...]] = []
    backend.model.transformer.wte.register_forward_pre_hook(
        lambda m, args: inputs.append(tuple(args[0].shape))
    )
    outs = [backend.step(t) for t in ids]
    assert inputs == [(1, 1)] * T  # one token per step through the cache, never a re-run

    ref_attention, ref_logits, ref_key = full_forward(gpt2_folder, ids)
    assert ref_attention.shape == (L, A, T, T)
    worst_attention = 0.0
    for t, out in enumerate(outs):
        row = out.internals["attention_row"]
        assert row.shape == (L, A, t + 1)
        worst_attention = max(worst_attention, float(np.abs(row - ref_attention[:, :, t, : t + 1]).max()))
    logits = np.stack([o.logits.numpy() for o in outs])
    probs = torch.softmax(torch.from_numpy(logits).double(), -1).numpy()
    ref_probs = torch.softmax(torch.from_numpy(ref_logits).double(), -1).numpy()
    worst_probs = float(np.abs(probs - ref_probs).max())
    keys = np.stack([o.memory_key for o in outs])
    worst_key = float(np.abs(keys - ref_key).max())
    print(
        f"GPT-2 max error vs eager full forward: attention {worst_attention:.2e} "
        f"probs {worst_probs:.2e} logits {np.abs(logits - ref_logits).max():.2e} key {worst_key:.2e}"
    )
    assert worst_attention < ATOL
    assert worst_probs < ATOL
    assert worst_key < ATOL
    assert keys.dtype == np.float32 and keys.shape == (T, backend.info.hidden_size)


def test_sharpened_model_is_not_uniform(tmp_path):
    """Guard for the test above: the sharpened model's heads really do prefer some positions."""
    folder = sharpen_gpt2(make_gpt2_dir(tmp_path / "g", layers=1, seed=2))
    backend = load_backend(str(folder))
    ids = backend.encode(TEXT).ids[:20]
    row = [backend.step(t) for t in ids][-1].internals["attention_row"]
    assert row.max() > 3.0 / len(ids)


def test_session_trace_matches_full_forward(gpt2_dir):
    session = Session(load_backend(str(gpt2_dir)))
    session.feed(TEXT)
    session.run()
    trace = session.trace
    ids = trace.token_ids
    attention, logits, _ = full_forward(gpt2_dir, ids)
    np.testing.assert_allclose(trace.attention_tensor(), attention, atol=ATOL, rtol=0)
    ref_probs = torch.softmax(torch.from_numpy(logits).double(), -1).numpy()
    top_ids, top_probs = trace.array("topk_ids"), trace.array("topk_probs")
    np.testing.assert_allclose(top_probs, np.take_along_axis(ref_probs, top_ids, 1), atol=ATOL, rtol=0)
    np.testing.assert_allclose(top_probs[:, 0], ref_probs.max(1), atol=ATOL, rtol=0)
    assert (np.diff(top_probs, axis=1) <= 0).all()  # best first


def test_greedy_generation_equals_argmax_chain(gpt2_dir):
    session = Session(load_backend(str(gpt2_dir)), sampling=SamplingConfig(temperature=0))
    prompt = session.backend.encode("The lazy dog").ids
    session.feed("The lazy dog")
    session.generate(8)
    session.run()
    model = GPT2LMHeadModel.from_pretrained(gpt2_dir, attn_implementation="eager").eval()
    chain = list(prompt)
    with torch.no_grad():
        for _ in range(8):
            chain.append(int(model(torch.tensor([chain])).logits[0, -1].argmax()))
    assert session.trace.token_ids == chain
    assert session.trace.generated == [False] * len(prompt) + [True] * 8


@pytest.fixture(scope="module")
def short_window_dir(tmp_path_factory):
    return make_gpt2_dir(
        tmp_path_factory.mktemp("gpt2-short") / "short", layers=2, heads=2, embd=16, positions=16
    )


def test_long_text_is_cut_with_a_warning(short_window_dir):
    session = Session(load_backend(str(short_window_dir)))
    n = len(session.backend.encode(TEXT).ids)
    assert n > 16
    warnings = session.feed(TEXT)
    assert len(warnings) == 1 and "16" in warnings[0] and "context window" in warnings[0]
    assert session.warnings == warnings
    session.generate(5)
    session.run()
    assert len(session.trace) == 16
    assert session.trace.prompt_tokens == 16
    assert not any(session.trace.generated)
    assert session.stop_reason and "context window" in session.stop_reason
    assert session.pending == 0
    assert session.step() is None  # asking again is harmless


def test_generation_stops_at_the_window(short_window_dir):
    session = Session(load_backend(str(short_window_dir)), sampling=SamplingConfig(temperature=1.0, seed=3))
    assert session.feed("The lazy") == []
    prompt = len(session.trace) + session.pending
    session.generate(40)
    session.run()
    assert len(session.trace) == 16
    assert sum(session.trace.generated) == 16 - prompt
    assert session.stop_reason is not None and "16" in session.stop_reason
    assert session.trace.attention_tensor().shape == (2, 2, 16, 16)
    # Feeding more text into the full window is cut to nothing, with a warning, not a crash.
    assert session.feed("more text") and session.pending == 0


def test_backend_refuses_step_past_window(short_window_dir):
    backend = load_backend(str(short_window_dir))
    for _ in range(16):
        backend.step(1)
    with pytest.raises(ContextFullError):
        backend.step(1)
    assert issubclass(ContextFullError, MemvizError)
    backend.reset()
    assert backend.position == 0
    backend.step(1)  # usable again after reset


def test_token_text_and_info(gpt2_dir):
    backend = load_backend(str(gpt2_dir))
    ids = backend.encode("fox jumps").ids
    assert "".join(backend.token_text(i) for i in ids) == "fox jumps"
    assert backend.info.architecture == "gpt2"
    assert backend.info.context_size == 128
    assert backend.fingerprint() == load_backend(str(gpt2_dir)).fingerprint()
