"""Every transformers family memviz lists, as a real tiny model built here (from_config +
save_pretrained), loaded through the registry and stepped through the KV cache: every layer's and
head's attention row, the next-token probabilities and the kNN key equal transformers' eager full
forward pass; and the ways a folder can be wrong are each one line, refused before the model is built.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from memviz.backends.families import TRANSFORMER, families
from memviz.backends.registry import load_backend
from memviz.errors import CheckpointError, MemvizError

ATOL = 1e-4
TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\nThe lazy dog sleeps well."
WINDOW = 6  # sliding windows well inside the ~40 tokens stepped
COMMON = dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=128)
GQA = dict(COMMON, num_key_value_heads=2, intermediate_size=64)


def family_configs(vocab: int) -> dict[str, object]:
    import transformers as tf

    ids = dict(vocab_size=vocab, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return {
        "gpt2": tf.GPT2Config(n_layer=2, n_head=4, n_embd=32, n_positions=128, **ids),
        "gpt_neo": tf.GPTNeoConfig(
            num_layers=2,
            attention_types=[[["local", "global"], 1]],
            num_heads=4,
            hidden_size=32,
            window_size=WINDOW,
            max_position_embeddings=128,
            **ids,
        ),
        "gpt_neox": tf.GPTNeoXConfig(**COMMON, intermediate_size=64, rotary_pct=0.25, **ids),
        "opt": tf.OPTConfig(**COMMON, ffn_dim=64, word_embed_proj_dim=32, **ids),
        "llama": tf.LlamaConfig(**GQA, **ids),
        "smollm3": tf.SmolLM3Config(**GQA, **ids),
        "mistral": tf.MistralConfig(**GQA, sliding_window=WINDOW, **ids),
        "qwen2": tf.Qwen2Config(
            **GQA, use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1, **ids
        ),
        "qwen3": tf.Qwen3Config(
            **GQA, head_dim=8, use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1, **ids
        ),
        "phi3": tf.Phi3Config(**GQA, sliding_window=WINDOW, **ids),
        "gemma2": tf.Gemma2Config(
            **GQA,
            head_dim=8,
            sliding_window=WINDOW,
            attn_logit_softcapping=5.0,  # low enough that the cap bends the sharpened logits
            final_logit_softcapping=30.0,
            query_pre_attn_scalar=8,
            **ids,
        ),
        "gemma3": tf.Gemma3TextConfig(
            **GQA, head_dim=8, sliding_window=WINDOW, query_pre_attn_scalar=8, **ids
        ),
    }


def make_tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([TEXT] * 5, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )


def sharpen(model: torch.nn.Module, seed: int) -> None:
    """Scale the weights so that heads attend sharply: at random init attention is near uniform,
    which a wrong row (shifted, unpadded, the wrong head) could still match."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and any(
                k in name for k in ("q_proj", "k_proj", "c_attn", "query_key_value", "qkv")
            ):
                p.normal_(0, 0.6, generator=gen)
            elif p.dim() == 1 and "norm" not in name and "ln" not in name:
                p.normal_(0, 0.3, generator=gen)


def save_family(name: str, folder: Path, config=None, tokenizer=None) -> Path:
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    tokenizer = tokenizer or make_tokenizer()
    config = config or family_configs(len(tokenizer))[name]
    torch.manual_seed(0)
    model = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)](config).eval()
    sharpen(model, seed=1)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory, tokenizer) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    configs = family_configs(len(tokenizer))
    return {name: save_family(name, root / name, configs[name], tokenizer) for name in configs}


def test_every_listed_transformer_family_is_tested():
    from memviz.backends.families import FAMILIES

    listed = {f.name for f in families(TRANSFORMER)}
    assert listed == set(family_configs(300))
    assert {"gpt2", "gpt_neo", "gpt_neox", "opt", "llama", "mistral", "qwen2", "qwen3", "phi3"} <= listed
    assert {"gemma2", "gemma3"} <= listed and FAMILIES["gemma3"].model_types == ("gemma3_text",)


def full_pass(folder: Path, ids: list[int], key_module: str, key_from: str):
    """transformers' own eager full pass: attention [L, A, T, T], probabilities [T, V], key [T, D]."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    module = model.get_submodule(key_module)
    got = {}
    if key_from == "input":
        module.register_forward_pre_hook(lambda m, args: got.__setitem__("key", args[0]))
    else:
        module.register_forward_hook(lambda m, i, o: got.__setitem__("key", o))
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_attentions=True)
    attention = torch.stack([a[0] for a in out.attentions]).numpy()
    probs = torch.softmax(out.logits[0].double(), -1).numpy()
    return attention, probs, got["key"].reshape(len(ids), -1).numpy()


def memviz_hooks(model: torch.nn.Module) -> list[str]:
    """The modules that hold a hook function defined in memviz."""
    return [
        name
        for name, m in model.named_modules()
        for hook in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())
        if getattr(hook, "__module__", "").startswith("memviz")
    ]


@pytest.mark.parametrize("name", sorted(family_configs(300)))
def test_stepping_equals_the_eager_full_pass(name, family_dirs):
    backend = load_backend(str(family_dirs[name]))
    info = backend.info
    assert (info.architecture, info.kind) == (name, TRANSFORMER)
    ids = backend.encode(TEXT).ids[:40]
    assert len(ids) >= 30
    outs = [backend.step(t) for t in ids]
    key_module = backend.family.key_module.format(last=info.num_layers - 1)
    assert backend.key_source == key_module  # the family's module, not the fallback
    attention, probs, keys = full_pass(family_dirs[name], ids, key_module, backend.family.key_from)
    T, L, A = len(ids), info.num_layers, info.num_heads
    assert attention.shape == (L, A, T, T)
    worst = 0.0
    for t, out in enumerate(outs):
        row = out.internals["attention_row"]
        assert row.shape == (L, A, t + 1) and row.dtype == np.float32
        worst = max(worst, float(np.abs(row - attention[:, :, t, : t + 1]).max()))
    assert worst < ATOL, f"{name}: attention differs by {worst:.2e}"
    stepped = np.stack([torch.softmax(o.logits.double(), -1).numpy() for o in outs])
    np.testing.assert_allclose(stepped, probs, atol=ATOL, rtol=0)
    stepped_keys = np.stack([o.memory_key for o in outs])
    np.testing.assert_allclose(stepped_keys, keys, atol=ATOL, rtol=0)
    # document_keys: the keys after tokens 0..n-2, batched, equal the stepped ones
    np.testing.assert_allclose(
        np.stack(list(backend.document_keys(ids))), stepped_keys[:-1], atol=ATOL, rtol=0
    )
    assert backend.position == T  # documents leave the step state alone
    assert not memviz_hooks(backend.model)  # (transformers keeps hooks of its own)
    # the heads really prefer some positions (sharpened), so the comparison above could fail
    assert attention[:, :, -1].max() > 3.0 / T


def test_heads_windows_and_caps_are_described(family_dirs):
    """num_kv_heads, per-layer sliding windows and soft-capping as the architectures have them; and
    a layer marked sliding really attends to its window alone (zero weight before it)."""
    expected = {
        "gpt2": (4, (None, None)),
        "gpt_neo": (4, (WINDOW, None)),
        "opt": (4, (None, None)),
        "llama": (2, (None, None)),
        "mistral": (2, (WINDOW, WINDOW)),
        "qwen2": (2, (None, WINDOW)),
        "phi3": (2, (WINDOW, WINDOW)),
        "gemma2": (2, (WINDOW, None)),
        "gemma3": (2, (WINDOW, WINDOW)),  # one full layer in six: both of two layers slide
    }
    for name, (kv, windows) in expected.items():
        backend = load_backend(str(family_dirs[name]))
        info = backend.info
        assert (info.num_kv_heads, info.sliding_window) == (kv, windows), name
        manifest = info.as_manifest()
        assert manifest["kind"] == "transformer" and manifest["num_kv_heads"] == kv
        assert manifest["sliding_window"] == list(windows)
        rows = [backend.step(t) for t in backend.encode(TEXT).ids[:20]][-1].internals["attention_row"]
        for layer, window in enumerate(windows):
            before = rows[layer, :, : 20 - WINDOW]  # the keys that a window leaves out
            assert before.any() != bool(window), (name, layer)
            np.testing.assert_allclose(rows[layer].sum(-1), 1.0, atol=1e-5)
    assert load_backend(str(family_dirs["gemma2"])).info.attn_softcap == 5.0
    assert load_backend(str(family_dirs["llama"])).info.attn_softcap is None
    info = load_backend(str(family_dirs["llama"])).info
    assert [info.kv_head_of(h) for h in range(4)] == [0, 0, 1, 1]


def test_key_falls_back_to_the_final_norm(family_dirs):
    """A model without the family's key module (a variant) keys on the final normed hidden state."""
    from memviz.backends.families import Family
    from memviz.backends.transformers_lm import TransformerBackend

    loaded = load_backend(str(family_dirs["llama"]))
    variant = Family("llama", TRANSFORMER, ("llama",), "Llama", "model.layers.{last}.no_such_norm")
    backend = TransformerBackend(loaded.model, loaded.tokenizer, "v", "v", family=variant)
    assert backend.key_source.startswith("model")
    ids = backend.encode(TEXT).ids[:12]
    key = [backend.step(t) for t in ids][-1].memory_key
    with torch.no_grad():
        final = loaded.model.model(torch.tensor([ids])).last_hidden_state[0, -1].numpy()
    np.testing.assert_allclose(key, final, atol=ATOL, rtol=0)


def test_bfloat16_rows_leave_in_the_trace_dtype(family_dirs):
    backend = load_backend(str(family_dirs["llama"]), device="cpu", dtype="bfloat16")
    assert backend.info.dtype == "bfloat16" and backend.device == "cpu"
    out = backend.step(backend.encode("The").ids[0])
    assert out.internals["attention_row"].dtype == np.float32
    assert out.logits.dtype == torch.float32 and out.memory_key.dtype == np.float32
    with pytest.raises(MemvizError, match="--dtype"):
        load_backend(str(family_dirs["llama"]), dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(MemvizError, match="--device cuda"):
            load_backend(str(family_dirs["llama"]), device="cuda")


# -- bad folders: one line each, before the model is built ------------------------------------------
def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_nan_weights_are_refused(family_dirs, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy(family_dirs["gpt2"], tmp_path / "nan")
    tensors = load_file(folder / "model.safetensors")
    tensors["transformer.h.1.mlp.c_fc.weight"][3, 5] = float("nan")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"transformer\.h\.1\.mlp\.c_fc\.weight holds NaN or Inf"):
        load_backend(str(folder))


def test_a_million_layers_is_refused_before_allocating(family_dirs, tmp_path):
    folder = _copy(family_dirs["gpt2"], tmp_path / "huge")
    _edit_config(folder, n_layer=1_000_000)
    # In a child with 3 GB of address space: building the model would need far more (and time).
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30));"
        "from memviz.cli import main; sys.exit(main(['trace', '--model', sys.argv[1], '--text', 'The fox',"
        " '--out', sys.argv[2]]))"
    )
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code, str(folder), str(tmp_path / "x.memviz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - start < 60
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "asks for 1000000 layers, the weights hold 2" in lines[0], result.stderr
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 3 * 2**20  # KiB: well under 3 GB


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"n_embd": 4096},
            r"does not match the weights: transformer\.\S+ is \[96\] in the file, the config .* \[12288\]",
        ),
        (
            {"vocab_size": 10_000_000},
            r"wte\.weight is \[\d+, 32\] in the file, the config makes it \[10000000, 32\]",
        ),
        ({"n_positions": 10_000_000}, r"wpe\.weight is \[128, 32\]"),
        ({"n_inner": 10_000_000}, r"mlp\.c_fc\.\w+ is \[(32, )?128\] in the file"),
    ],
)
def test_config_sizes_are_checked_against_the_headers(family_dirs, tmp_path, change, message):
    folder = _copy(family_dirs["gpt2"], tmp_path / "sized")
    _edit_config(folder, **change)
    with pytest.raises(CheckpointError, match=message):
        load_backend(str(folder))


def test_missing_tokenizer_is_named(family_dirs, tmp_path):
    folder = _copy(family_dirs["llama"], tmp_path / "no-tok")
    for path in folder.iterdir():
        if path.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            path.unlink()
    with pytest.raises(CheckpointError, match="the tokenizer is missing"):
        load_backend(str(folder))


def test_unsupported_model_type_names_the_families(family_dirs, tmp_path):
    folder = _copy(family_dirs["llama"], tmp_path / "t5")
    _edit_config(folder, model_type="t5")
    with pytest.raises(CheckpointError) as caught:
        load_backend(str(folder))
    text = str(caught.value)
    assert "\n" not in text and "unsupported model_type 't5'" in text
    for name in (
        "gpt2",
        "gpt_neo",
        "gpt_neox",
        "opt",
        "llama",
        "mistral",
        "qwen2",
        "qwen3",
        "phi3",
        "gemma2",
    ):
        assert name in text


def test_remote_code_is_never_run(family_dirs, tmp_path):
    """A config pointing at the folder's own code (auto_map) loads the built-in class; the code never runs."""
    folder = _copy(family_dirs["llama"], tmp_path / "remote")
    marker = tmp_path / "ran"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (folder / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    auto_map = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.Evil"}
    _edit_config(folder, auto_map=auto_map)
    backend = load_backend(str(folder))
    assert type(backend.model).__name__ == "LlamaForCausalLM"
    assert not marker.exists()
    _edit_config(folder, model_type="evil")  # a custom architecture: refused, still not run
    with pytest.raises(CheckpointError, match="unsupported model_type 'evil'"):
        load_backend(str(folder))
    assert not marker.exists()


def test_head_grid_marks_shared_kv_heads_and_windows(family_dirs, run_session, make_panel):
    """The head grid's axes mark sliding-window layers and each key/value group's first query head."""
    from memviz.panels.head_grid import HeadGridPanel

    trace = run_session(family_dirs["gemma2"]).trace
    assert trace.kind == "transformer" and HeadGridPanel.supports(trace)
    view, panel = make_panel(HeadGridPanel, trace, cursor=len(trace) - 1)
    layers = [label for _pos, label in panel.plot.getAxis("left")._tickLevels[0]]
    heads = [label for _pos, label in panel.plot.getAxis("bottom")._tickLevels[0]]
    assert layers == [f"0 w{WINDOW}", "1"]
    assert heads == ["0 kv0", "1", "2 kv1", "3"]
    tip = panel.tooltip_for(0, 3)
    assert "key/value head 1, shared by heads 2-3" in tip and f"the last {WINDOW} tokens" in tip
    assert "soft-capped at 5" in tip
    gpt2 = run_session(family_dirs["gpt2"]).trace
    panel.set_trace(gpt2)
    panel.render(view.state)
    assert [label for _p, label in panel.plot.getAxis("bottom")._tickLevels[0]] == ["0", "1", "2", "3"]
    assert "key/value" not in panel.tooltip_for(0, 0) and "window" not in panel.tooltip_for(1, 0)


def test_model_picker_sets_device_and_dtype(qtbot, settings, family_dirs):
    """The picker's Device and Precision choices go with the model it chooses (and are remembered)."""
    from memviz.backends import placement
    from memviz.ui.model_picker import ModelPicker

    picker = ModelPicker(settings)
    qtbot.addWidget(picker)
    chosen: list[str] = []
    picker.chosen.connect(chosen.append)
    picker.device_combo.setCurrentText("cpu")
    picker.dtype_combo.setCurrentText("bfloat16")
    try:
        picker.choose(str(family_dirs["qwen3"]))
        assert chosen == [str(family_dirs["qwen3"])] and placement.preferred() == ("cpu", "bfloat16")
        backend = load_backend(chosen[0])  # as the worker loads it: no options of its own
        assert (backend.device, backend.info.dtype) == ("cpu", "bfloat16")
        again = ModelPicker(settings)
        qtbot.addWidget(again)
        assert (again.device_combo.currentText(), again.dtype_combo.currentText()) == ("cpu", "bfloat16")
    finally:
        placement.set_preferred("auto", "float32")
