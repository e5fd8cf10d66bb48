"""Per-step target log-prob and entropy, and the logit lens, on real tiny models: each against an
independent computation (an eager full forward pass of transformers; the trace's own h for a GRU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memviz.backends.registry import load_backend
from memviz.core.sampling import SamplingConfig
from memviz.core.trace import Trace
from memviz.errors import MemvizError

TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n"


def save_tiny(kind: str, folder, tokenizer_dir):
    """A tiny llama or gemma2 (final logit soft-capping) sharing the tiny GPT-2's tokenizer."""
    import transformers as tf

    tokenizer = tf.AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = dict(vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=0, pad_token_id=0)
    common = dict(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=3,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    if kind == "llama":
        config = tf.LlamaConfig(**common, **ids)
    else:
        config = tf.Gemma2Config(
            **common,
            head_dim=8,
            sliding_window=6,
            final_logit_softcapping=3.0,
            query_pre_attn_scalar=8,
            **ids,
        )
    torch.manual_seed(0)
    model = tf.MODEL_FOR_CAUSAL_LM_MAPPING[type(config)](config).eval()
    with torch.no_grad():  # sharper than random init: layers' guesses differ
        for p in model.parameters():
            p.mul_(3.0) if p.dim() >= 2 else None
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, gpt2_dir_factory):
    root = tmp_path_factory.mktemp("lens")
    gpt2 = gpt2_dir_factory(root / "gpt2")
    return {
        "gpt2": gpt2,
        "llama": save_tiny("llama", root / "llama", gpt2),
        "gemma2": save_tiny("gemma2", root / "gemma2", gpt2),
    }


def full_forward(backend, ids: list[int]):
    model = backend.model
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), output_hidden_states=True, use_cache=False)


def final_head(model, family: str):
    """The family's final norm and unembedding, named here independently of backends.logit_lens."""
    if family == "gpt2":
        norm = model.transformer.ln_f
    else:
        norm = model.model.norm
    cap = getattr(model.config, "final_logit_softcapping", None)

    def head(h):
        logits = model.lm_head(norm(h))
        return torch.tanh(logits / cap) * cap if cap else logits

    return head


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma2"])
def test_target_logprob_entropy_and_lens_equal_a_full_forward(family, model_dirs, run_session):
    backend = load_backend(str(model_dirs[family]))
    session = run_session(backend, TEXT, logit_lens=True)
    trace = session.trace
    ids = trace.token_ids
    T, L = len(trace), backend.info.num_layers
    out = full_forward(backend, ids)
    logp = torch.log_softmax(out.logits[0].double(), -1).numpy()  # [T, V]
    # target log p: step t's distribution at the token of step t+1; the last step has none
    expected = logp[np.arange(T - 1), ids[1:]]
    np.testing.assert_allclose(trace.array("target_logprob")[:-1], expected, atol=1e-4)
    assert np.isnan(trace.array("target_logprob")[-1])
    entropy = -(np.exp(logp) * logp).sum(-1)
    np.testing.assert_allclose(trace.array("entropy"), entropy, atol=1e-4)

    # the lens: blocks 0..L-2 from output_hidden_states through the final norm + unembedding
    head = final_head(backend.model, family)
    with torch.no_grad():
        lens = torch.stack(
            [torch.softmax(head(out.hidden_states[k + 1][0]).double(), -1) for k in range(L - 1)]
        )
    lens = torch.cat([lens, torch.softmax(out.logits[0].double(), -1)[None]]).numpy()  # [L, T, V]
    assert trace.array("lens_topk_ids").shape == (T, L, 10)
    got_ids, got_p = trace.array("lens_topk_ids"), trace.array("lens_topk_probs")
    for t in range(T):
        for layer in range(L):
            np.testing.assert_allclose(
                got_p[t, layer], lens[layer, t, got_ids[t, layer]], rtol=1e-4, atol=1e-6
            )
            assert got_p[t, layer, 0] == pytest.approx(lens[layer, t].max(), abs=1e-4)
    target = trace.array("lens_target_prob")
    np.testing.assert_allclose(target[:-1], lens[:, np.arange(T - 1), ids[1:]].T, rtol=1e-4, atol=1e-6)
    assert np.isnan(target[-1]).all()
    # the last layer is the model's own output, exactly
    np.testing.assert_array_equal(got_ids[:, -1], trace.array("topk_ids")[:, :10])
    np.testing.assert_allclose(got_p[:, -1], trace.array("topk_probs")[:, :10], rtol=1e-6)
    np.testing.assert_allclose(np.exp(trace.array("target_logprob")[:-1]), target[:-1, -1], rtol=1e-5)
    # the lens is not the last layer everywhere (else the test could not tell blocks apart)
    assert (got_ids[:, 0] != got_ids[:, -1]).any()


def test_hidden_states_are_block_outputs_but_the_last(model_dirs):
    """What the lens relies on: output_hidden_states[l + 1] is block l's raw output for l < L-1, and
    its last element is already after the final norm (so the backend uses the model's logits)."""
    backend = load_backend(str(model_dirs["llama"]))
    model = backend.model
    seen: list[torch.Tensor] = []
    hooks = [
        b.register_forward_hook(lambda _m, _i, o: seen.append(o[0] if isinstance(o, tuple) else o))
        for b in model.model.layers
    ]
    try:
        out = full_forward(backend, backend.encode(TEXT).ids[:12])
    finally:
        for h in hooks:
            h.remove()
    L = backend.info.num_layers
    for layer in range(L - 1):
        torch.testing.assert_close(
            out.hidden_states[layer + 1], seen[layer].reshape(out.hidden_states[1].shape)
        )
    with torch.no_grad():
        torch.testing.assert_close(
            out.hidden_states[L], model.model.norm(seen[L - 1].reshape(out.hidden_states[1].shape))
        )


def test_generated_steps_and_saved_traces_keep_them(model_dirs, run_session, tmp_path):
    backend = load_backend(str(model_dirs["gpt2"]))
    session = run_session(
        backend, TEXT, generate=6, sampling=SamplingConfig(temperature=1.0, seed=3), logit_lens=True
    )
    trace = session.trace
    out = full_forward(backend, trace.token_ids)
    logp = torch.log_softmax(out.logits[0].double(), -1).numpy()
    T = len(trace)
    # a generated token's log p is under the model's distribution (before temperature / top-k / top-p)
    np.testing.assert_allclose(
        trace.array("target_logprob")[:-1], logp[np.arange(T - 1), trace.token_ids[1:]], atol=1e-4
    )
    loaded = Trace.load(trace.save(tmp_path / "run.memviz"))
    for key in ("target_logprob", "entropy", "lens_topk_ids", "lens_topk_probs", "lens_target_prob"):
        np.testing.assert_array_equal(loaded.array(key), trace.array(key))
    # lens top-1 texts are in the trace's vocabulary: a saved trace labels them without the model
    assert all(loaded.text_of(int(i)) is not None for i in loaded.array("lens_topk_ids")[:, :, 0].ravel())


def test_recurrent_lens_is_the_head_on_each_fitting_layer(rnn_dir_factory, tmp_path, run_session):
    folder = rnn_dir_factory(tmp_path / "gru", cell="gru", sizes=(7, 5, 7))
    backend = load_backend(str(folder))
    trace = run_session(backend, TEXT, logit_lens=True).trace
    hidden = trace.array("hidden").astype(np.float64)  # [T, L, W]
    w = backend.model.head.weight.detach().double().numpy()
    b = backend.model.head.bias.detach().double().numpy()
    ids, probs, target = (trace.array(k) for k in ("lens_topk_ids", "lens_topk_probs", "lens_target_prob"))
    T = len(trace)
    for layer in (0, 2):
        logits = hidden[:, layer, :7] @ w.T + b
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        np.testing.assert_allclose(probs[:, layer], np.take_along_axis(p, ids[:, layer], -1), atol=1e-5)
        np.testing.assert_allclose(target[:-1, layer], p[np.arange(T - 1), trace.token_ids[1:]], atol=1e-5)
    # layer 1 has 5 units: the 7-wide head does not fit it
    assert (ids[:, 1] == -1).all() and np.isnan(probs[:, 1]).all() and np.isnan(target[:, 1]).all()
    np.testing.assert_allclose(probs[:, 2], trace.array("topk_probs")[:, :10], rtol=1e-5)


def test_no_lens_for_a_classifier_and_none_unless_asked(rnn_dir_factory, tmp_path, run_session):
    from memviz.core.session import Session

    classifier = load_backend(str(rnn_dir_factory(tmp_path / "cls", head="classifier")))
    with pytest.raises(MemvizError, match="classifier"):
        Session(classifier, logit_lens=True)
    trace = run_session(classifier, TEXT).trace
    assert not trace.has("target_logprob") and not trace.has("lens_topk_ids")
    lm = run_session(load_backend(str(rnn_dir_factory(tmp_path / "lm"))), TEXT).trace
    assert lm.has("target_logprob") and lm.has("entropy") and not lm.has("lens_target_prob")


def test_trace_cli_flag_and_bad_lens_columns(model_dirs, tmp_path, capsys):
    from memviz.cli import main

    out = tmp_path / "lens.memviz"
    assert (
        main(["trace", "--model", str(model_dirs["gpt2"]), "--text", TEXT, "--logit-lens", "--out", str(out)])
        == 0
    )
    trace = Trace.load(out)
    assert trace.array("lens_target_prob").shape == (len(trace), 3)
    arrays = dict(np.load(out, allow_pickle=False))
    bad = dict(arrays, lens_target_prob=arrays["lens_target_prob"][:, :2])
    with pytest.raises(MemvizError, match="lens_target_prob"):
        Trace.from_arrays(bad)
    worse = dict(arrays, target_logprob=np.abs(arrays["target_logprob"]) + 1)
    with pytest.raises(MemvizError, match="target_logprob"):
        Trace.from_arrays(worse)
    old = {k: v for k, v in arrays.items() if k not in ("target_logprob", "entropy")}
    assert not Trace.from_arrays(old).has("target_logprob")  # traces from before them still open
