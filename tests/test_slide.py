"""--slide: a transformer reads past its context window in windows that slide. When the cache is full
the backend keeps the last window - stride tokens, re-encodes them from position 0 and reads on, so
every step is the model over exactly its window: checked here against transformers' own eager full
pass over that window's tokens (the next-token distribution and every layer's and head's attention
row, padded with zeros before the window), for a tiny GPT-2 (learned positions), a tiny Llama
(rotary, grouped-query) and a Mistral (sliding-window layers too), reading three times their
window of 16 tokens. Also: the boundaries, the
save/load round trip, dense rows (--dense-attention) against q/k, a run without --slide still
stopping at the window, and bad values / inconsistent files refused in one line.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from memviz import cli
from memviz.backends.registry import load_backend
from memviz.core.interventions import parse_all
from memviz.core.session import Session
from memviz.core.trace import Trace
from memviz.errors import MemvizError

WINDOW = 16
TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\nThe lazy dog sleeps. " * 3
ATOL = 1e-4


def _tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([TEXT] * 5, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )


def _config(name: str, vocab: int):
    import transformers as tf

    ids = dict(vocab_size=vocab, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if name == "gpt2":
        return tf.GPT2Config(n_layer=2, n_head=4, n_embd=32, n_positions=WINDOW, **ids)
    gqa = dict(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=2,
        intermediate_size=64,
        max_position_embeddings=WINDOW,
    )
    if name == "mistral":  # sliding-window layers inside each window (6 of its 16 tokens)
        return tf.MistralConfig(**gqa, sliding_window=6, **ids)
    return tf.LlamaConfig(**gqa, **ids)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    root = tmp_path_factory.mktemp("slide")
    tokenizer = _tokenizer()
    out = {}
    for name in ("gpt2", "llama", "mistral"):
        config = _config(name, len(tokenizer))
        torch.manual_seed(0)
        model = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)](config).eval()
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():  # sharp heads: a row over the wrong keys or positions cannot pass
            for key, p in model.named_parameters():
                if p.dim() >= 2 and any(k in key for k in ("q_proj", "k_proj", "c_attn")):
                    p.normal_(0, 0.6, generator=gen)
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def backends(folders) -> dict[str, object]:
    return {name: load_backend(str(folder), device="cpu") for name, folder in folders.items()}


@pytest.fixture(scope="module")
def references(folders) -> dict[str, object]:
    """The HF models themselves, loaded apart from memviz, with eager attention."""
    from transformers import AutoModelForCausalLM

    return {
        name: AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
        for name, folder in folders.items()
    }


def slid(backend, stride=True, **options) -> Session:
    session = Session(backend, slide=stride, **options)
    assert session.feed(TEXT) == []  # nothing cut: the window does not bound the run
    session.run()
    return session


def expected_starts(T: int, stride: int) -> list[int]:
    """Window k >= 1 begins at step W + (k-1)·S and sees tokens from k·S on."""
    starts, start, first = [], 0, WINDOW
    for t in range(T):
        if t == first:
            start += stride
            first += stride
        starts.append(start)
    return starts


def check_against_fresh_windows(trace: Trace, model, rows: bool = True) -> None:
    """Every step equals the HF model's eager full pass over exactly window_start..t."""
    ids = trace.token_ids
    topk_ids, topk_probs = trace.array("topk_ids"), trace.array("topk_probs")
    logprob = trace.array("target_logprob")
    for t in range(len(trace)):
        start = trace.window_start(t)
        with torch.no_grad():
            out = model(torch.tensor([ids[start : t + 1]]), output_attentions=True)
        p = torch.softmax(out.logits[0, -1].double(), -1).numpy()
        np.testing.assert_allclose(topk_probs[t], p[topk_ids[t]], atol=1e-5)
        assert list(topk_ids[t][:5]) == list(np.argsort(-p, kind="stable")[:5])
        if t + 1 < len(trace):
            assert logprob[t] == pytest.approx(np.log(p[ids[t + 1]]), abs=1e-4)
        if rows:
            want = np.zeros((len(out.attentions), out.attentions[0].shape[1], t + 1))
            for layer, a in enumerate(out.attentions):
                want[layer, :, start:] = a[0, :, -1].double().numpy()
            np.testing.assert_allclose(trace.attention_rows_at(t), want, atol=ATOL, err_msg=f"step {t}")


@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral"])
@pytest.mark.parametrize("stride", [True, 5])
def test_every_step_is_the_model_over_its_window(backends, references, name, stride):
    session = slid(backends[name], stride)
    trace = session.trace
    S = WINDOW // 2 if stride is True else stride
    assert len(trace) >= 3 * WINDOW and session.stop_reason is None
    assert trace.attention_storage == "qk"
    starts = expected_starts(len(trace), S)
    assert [trace.window_start(t) for t in range(len(trace))] == starts
    assert list(trace.array("window_start")) == starts
    assert trace.window_boundaries == tuple(range(WINDOW, len(trace), S))
    assert trace.manifest()["slide"] == {"window": WINDOW, "stride": S}
    check_against_fresh_windows(trace, references[name])
    # one head's matrix and row equal the rows (the other read paths of the same store)
    full = np.zeros((len(trace), len(trace)), np.float32)
    for t in range(len(trace)):
        full[t, : t + 1] = trace.attention_rows_at(t)[1, 3]
    np.testing.assert_array_equal(trace.attention_matrix(1, 3), full)
    np.testing.assert_array_equal(trace.attention_matrix(1, 3, 20, 40), full[20:40, :40])
    np.testing.assert_array_equal(trace.attention_row(WINDOW + 3, 1, 3), full[WINDOW + 3, : WINDOW + 4])


def test_generation_slides_too(backends, references):
    session = Session(backends["llama"], slide=6)
    session.feed("The quick brown fox")
    session.generate(2 * WINDOW + 5)
    session.run()
    trace = session.trace
    assert session.stop_reason is None and sum(trace.generated) == 2 * WINDOW + 5
    assert trace.window_boundaries == tuple(range(WINDOW, len(trace), 6))
    check_against_fresh_windows(trace, references["llama"])


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_save_and_load_give_the_same_trace(backends, name, tmp_path):
    trace = slid(backends[name], 5).trace
    path = trace.save(tmp_path / "s.memviz")
    loaded = Trace.load(path)
    assert loaded.window_boundaries == trace.window_boundaries
    assert [loaded.window_start(t) for t in range(len(trace))] == [
        trace.window_start(t) for t in range(len(trace))
    ]
    np.testing.assert_array_equal(loaded.attention_tensor(), trace.attention_tensor())
    for t in (0, WINDOW, len(trace) - 1):
        for a, b in zip(loaded.queries_keys(t), trace.queries_keys(t), strict=True):
            np.testing.assert_array_equal(a, b)
    with np.load(path) as archive:  # the windows' table as plain numpy reads it
        segments = archive["segments"]
        assert segments[:, 0].tolist() == [0, *trace.window_boundaries]
        assert len(archive["segment_queries"]) == len(trace) + sum(segments[1:, 0] - segments[1:, 1])
        assert "queries" not in archive.files and "keys" not in archive.files


def test_a_save_between_a_windows_start_and_its_first_step_is_consistent(backends, tmp_path):
    """The worker starts a window, then appends its step; a save (the UI thread) in between
    writes the steps there are, without the new window's prefix rows."""
    trace = slid(backends["gpt2"], 5).trace
    before = trace.to_arrays()
    T = len(trace)
    q, k = zip(*(trace.queries_keys(t) for t in range(T - 3, T)), strict=True)
    trace.start_window(T, T - 3, np.stack(q), np.stack(k))
    after = trace.to_arrays()
    for key in ("segments", "segment_queries", "segment_keys", "window_start"):
        np.testing.assert_array_equal(after[key], before[key])
    loaded = Trace.load(trace.save(tmp_path / "mid.memviz"))
    assert loaded.window_boundaries == trace.window_boundaries and len(loaded) == T


def test_dense_rows_with_slide_equal_the_rebuilt_ones(backends, references, tmp_path):
    qk = slid(backends["gpt2"]).trace
    dense = slid(backends["gpt2"], dense_attention=True).trace
    assert dense.attention_storage == "dense" and dense.window_boundaries == qk.window_boundaries
    for t in range(len(qk)):
        np.testing.assert_allclose(dense.attention_rows_at(t), qk.attention_rows_at(t), atol=ATOL)
    check_against_fresh_windows(dense, references["gpt2"], rows=False)
    loaded = Trace.load(dense.save(tmp_path / "d.memviz"))
    assert loaded.window_boundaries == dense.window_boundaries
    np.testing.assert_array_equal(loaded.attention_tensor(), dense.attention_tensor())


def test_without_slide_the_run_still_stops_at_the_window(backends, tmp_path):
    session = Session(backends["gpt2"])
    warnings = session.feed(TEXT)
    session.run()
    assert len(session.trace) == WINDOW
    assert any("context window of 16 tokens" in w for w in warnings)
    session = Session(backends["gpt2"])
    session.feed("The quick brown fox")
    session.generate(2 * WINDOW)
    session.run()
    assert len(session.trace) == WINDOW
    assert session.stop_reason.startswith("context window full (16 tokens): reset to read more")
    trace = session.trace
    assert trace.window_boundaries == () and trace.window_start(3) == 0
    arrays = trace.to_arrays()
    assert not {"window_start", "segments", "segment_queries", "segment_keys"} & set(arrays)
    assert "slide" not in json.loads(str(arrays["manifest"][()]))
    assert {"queries", "keys"} <= set(arrays)


def test_the_cli_slides_and_refuses_bad_strides_in_one_line(folders, tmp_path, capsys):
    out = tmp_path / "t.memviz"
    base = ["trace", "--model", str(folders["gpt2"]), "--text", TEXT, "--out", str(out)]
    assert cli.main([*base, "--slide", "4"]) == 0
    trace = Trace.load(out)
    assert len(trace) >= 3 * WINDOW and trace.window_boundaries == tuple(range(WINDOW, len(trace), 4))
    out.unlink()
    assert cli.main([*base, "--slide"]) == 0
    assert Trace.load(out).window_boundaries[:2] == (WINDOW, WINDOW + WINDOW // 2)
    out.unlink()
    capsys.readouterr()
    for bad, why in (
        (["--slide", "0"], "out of range"),
        (["--slide", "-3"], "out of range"),
        (["--slide", "x"], "not a whole number"),
        (["--slide", "17"], "the stride must be 1 to 16"),
        (["--slide", "4", "--intervene", "context:6"], "not with a context: or mask:"),
    ):
        assert cli.main([*base, *bad]) == 2, bad
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and why in err and not out.exists(), (bad, err)


def test_slide_is_refused_where_there_is_no_window_to_slide(backends, lstm_dir):
    with pytest.raises(MemvizError, match="no context window to slide"):
        Session(load_backend(str(lstm_dir)), slide=True)
    with pytest.raises(MemvizError, match="not with a context: or mask:"):
        Session(backends["gpt2"], slide=True, interventions=parse_all(["mask:2-3"]))
    for bad in (0, -1, 17, 2.5):
        with pytest.raises(MemvizError, match="stride must be 1 to 16"):
            Session(backends["gpt2"], slide=bad)


def test_a_head_ablation_slides_with_the_run(backends):
    """The re-prime pass runs under the ablation too: the last window equals the backend reading
    that window's tokens alone, from a fresh cache, under the same ablation."""
    backend = backends["llama"]
    plain = slid(backend, 8).trace
    trace = slid(backend, 8, interventions=parse_all(["head:1.2=zero"])).trace  # the backend keeps it
    t = len(trace) - 1
    start = trace.window_start(t)
    assert start > 0
    backend.reset()
    for token in trace.token_ids[start : t + 1]:
        out = backend.step(token)
    p = torch.softmax(out.logits.double(), -1).numpy()
    np.testing.assert_allclose(trace.array("topk_probs")[t], p[trace.array("topk_ids")[t]], atol=1e-6)
    # the tiny model's distribution is nearly flat: the ablation moves it by ~2e-4, far above 1e-6
    assert np.abs(plain.array("topk_probs")[t] - trace.array("topk_probs")[t]).max() > 5e-5
    backend.set_interventions(())


def _rewrite(path: Path, out: Path, change) -> Path:
    """A copy of a saved trace with some members replaced (change(arrays) -> arrays)."""
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays = change(arrays)
    with zipfile.ZipFile(out, "w") as zf:
        for key, value in arrays.items():
            with zf.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, np.asarray(value))
    return out


def test_inconsistent_window_tables_are_refused_in_one_line(backends, tmp_path):
    path = slid(backends["gpt2"], 5).trace.save(tmp_path / "s.memviz")
    Trace.load(_rewrite(path, tmp_path / "same.memviz", lambda a: a))  # the rewrite alone is fine

    def edit(key, fn):
        def change(arrays):
            arrays[key] = fn(arrays[key].copy())
            return arrays

        return change

    def shift_row(s):
        s[2, 2] += 1
        return s

    def shift_start(w):
        w[-1] -= 1
        return w

    def drop(key):
        def change(arrays):
            del arrays[key]
            return arrays

        return change

    for change, why in (
        (edit("segments", shift_row), "first rows do not follow"),
        (edit("segments", lambda s: s[:, :2]), "expected [S, 3]"),
        (edit("segments", lambda s: s[[0, 2, 1]]), "first steps must rise"),
        (edit("window_start", shift_start), "'window_start' disagrees with 'segments'"),
        (edit("segment_queries", lambda q: q[:-1]), "'segment_keys' has shape"),
        (
            lambda a: {
                **a,
                "segment_queries": a["segment_queries"][:-1],
                "segment_keys": a["segment_keys"][:-1],
            },
            "the segments need",
        ),
        (drop("segment_keys"), "without 'segment_keys'"),
        (drop("window_start"), "without its 'window_start'"),
    ):
        bad = _rewrite(path, tmp_path / "bad.memviz", change)
        with pytest.raises(MemvizError) as info:
            Trace.load(bad)
        message = str(info.value)
        assert "\n" not in message and why in message, message


def test_a_sliding_runs_folder_recovers_it_exactly(backends, tmp_path, monkeypatch):
    """A crash leaves the run's folder (memviz.core.run_folder): the windows' table is rebuilt
    from the window_start column, the segments' q/k from their spool files."""
    monkeypatch.setenv("MEMVIZ_RUNS_DIR", str(tmp_path / "runs"))
    trace = slid(backends["llama"], 5).trace
    recovered = Trace.recover(trace.spool_folder)
    assert recovered.window_boundaries == trace.window_boundaries
    saved, again = trace.to_arrays(), recovered.to_arrays()
    assert {"segments", "segment_queries", "segment_keys", "window_start"} <= set(again)
    for key in ("segments", "segment_queries", "segment_keys", "window_start", "topk_probs"):
        np.testing.assert_array_equal(again[key], saved[key], err_msg=key)
    np.testing.assert_array_equal(recovered.attention_tensor(), trace.attention_tensor())


def test_a_step_that_cannot_be_written_takes_its_new_window_with_it(backends, tmp_path, monkeypatch):
    """A full disk at the first step of a window: the step and the window begun for it go; the
    trace holds its first window, whole, and saves and loads as such."""
    monkeypatch.setenv("MEMVIZ_RUNS_DIR", str(tmp_path / "runs"))
    session = Session(backends["gpt2"], slide=5)
    session.feed("The quick brown fox")  # then generated: the prompt is all read when the disk fills
    session.generate(2 * WINDOW)
    while len(session.trace) < WINDOW:
        session.step()
    trace = session.trace

    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trace._run, "commit", full)
    with pytest.raises(MemvizError, match="cannot write the run"):
        session.step()
    assert len(trace) == WINDOW and trace.window_boundaries == ()
    arrays = trace.to_arrays()
    assert arrays["segments"].tolist() == [[0, 0, 0]] and len(arrays["segment_queries"]) == WINDOW
    for spool in trace.attention_files:  # the new window's carried rows are gone from disk too
        assert len(np.load(spool, mmap_mode="r")) == WINDOW
    monkeypatch.undo()
    loaded = Trace.load(trace.save(tmp_path / "cut.memviz"))
    np.testing.assert_array_equal(loaded.attention_tensor(), trace.attention_tensor())
