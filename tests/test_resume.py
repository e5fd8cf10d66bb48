"""Re-running from the first changed step (issue 17, the app's Run -> Intervene): a run resumed from a
baseline with Session.resume_from equals, array by array, a run from scratch with the new
interventions; its steps before the first changed step are the baseline's rows as they were; and
those steps were not stepped (the backend's step is counted).

Real tiny models: GPT-2, a Llama with grouped-query attention, a Mistral with grouped-query attention
and a sliding window (shorter than the prefix), an LSTM and a GRU (layers of different widths).
"""

from __future__ import annotations

import numpy as np
import pytest

from memviz.backends.registry import load_backend
from memviz.core.interventions import parse_all
from memviz.core.resume import first_changed_step, first_step
from memviz.core.session import Session
from memviz.core.trace import Trace
from tests.test_transformer_families import family_configs, make_tokenizer, save_family

TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\nThe lazy dog sleeps."
TOL = 1e-5


def sharpen(model, seed: int = 1) -> None:
    """At init heads are near uniform and their outputs tiny; sharpened, every change shows."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "wpe" not in name:
                p.normal_(0, 0.3, generator=gen)


@pytest.fixture(scope="module")
def transformers_(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("resume")
    tokenizer = make_tokenizer()
    configs = family_configs(len(tokenizer))
    backends = {}
    for name in ("gpt2", "llama", "mistral"):
        backend = load_backend(str(save_family(name, root / name, configs[name], tokenizer)), device="cpu")
        sharpen(backend.model)
        backends[name] = backend
    return backends


@pytest.fixture(scope="module")
def recurrent(tmp_path_factory, rnn_dir_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("resume")
    return {
        cell: load_backend(str(rnn_dir_factory(root / cell, cell=cell, sizes=(9, 5, 7))))
        for cell in ("lstm", "gru")
    }


def run(backend, specs: list[str], **options) -> Session:
    session = Session(backend, interventions=parse_all(specs), **options)
    session.feed(TEXT)
    session.run()
    return session


def counting_steps(backend) -> list[int]:
    """Count the backend's steps from now on (an instance attribute over the class's method)."""
    calls: list[int] = []
    step = type(backend).step

    def counted(token_id: int):
        calls.append(token_id)
        return step(backend, token_id)

    backend.step = counted
    return calls


def resumed(backend, old: list[str], new: list[str], **options) -> tuple[Session, Trace, int, int]:
    """The app's path: a run with `old`, then the same session given `new` and resumed from its trace
    at the first changed step. Returns (session, baseline, steps taken over, steps stepped)."""
    session = run(backend, old, **options)
    baseline = session.trace
    step = first_changed_step(parse_all(old), parse_all(new))
    session.set_interventions(parse_all(new))
    calls = counting_steps(backend)
    try:
        taken = session.resume_from(baseline, step, TEXT)
        session.run()
    finally:
        del backend.step
    return session, baseline, taken, len(calls)


def assert_same_run(got: Session, want: Session) -> None:
    a, b = got.trace, want.trace
    assert a.token_ids == b.token_ids and a.generated == b.generated and a.token_bytes == b.token_bytes
    assert a.manifest() == b.manifest()  # the interventions, prompt_tokens, model
    assert sorted(a.column_names) == sorted(b.column_names)
    for key in b.column_names:
        np.testing.assert_allclose(a.array(key), b.array(key), rtol=TOL, atol=TOL, err_msg=key)
    assert a.has("attention") == b.has("attention")
    if b.has("attention"):
        np.testing.assert_allclose(a.attention_tensor(), b.attention_tensor(), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(np.stack(got.keys), np.stack(want.keys), rtol=TOL, atol=TOL)
    assert set(a.vocab) == set(b.vocab)


def assert_prefix_is_the_baselines(trace: Trace, baseline: Trace, n: int) -> None:
    assert trace.token_ids[:n] == baseline.token_ids[:n]
    for key in baseline.column_names:
        np.testing.assert_array_equal(trace.array(key)[:n], baseline.array(key)[:n], err_msg=key)
    for t in range(n if baseline.has("attention") else 0):
        np.testing.assert_array_equal(trace.attention_rows_at(t), baseline.attention_rows_at(t))


TRANSFORMER_CASES = [
    ([], ["head:1.0=zero"]),  # from step 0: nothing taken over
    ([], ["mask:5-8"]),
    (["head:1.0=zero"], ["head:1.0=zero", "mask:9-12"]),
    (["mask:4-6"], []),  # cleared: from step 4
    ([], ["context:7"]),  # steps 0..6 see their whole context anyway
    (["head:0.1=zero"], ["head:0.1=zero", "context:10"]),
]


@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral"])
@pytest.mark.parametrize(("old", "new"), TRANSFORMER_CASES)
def test_a_resumed_transformer_run_equals_a_run_from_scratch(transformers_, name, old, new):
    backend = transformers_[name]
    session, baseline, taken, stepped = resumed(backend, old, new)
    want = run(backend, new)
    T = len(want.trace)
    first = first_changed_step(parse_all(old), parse_all(new))
    # a new run that records queries and keys (trace format 2) is read from the start
    qk = getattr(want.trace, "attention_storage", None) == "qk"
    assert T > 20 and taken == (0 if qk else min(first, T - 1))
    assert stepped == T - taken  # the steps taken over were not stepped
    assert_same_run(session, want)
    assert_prefix_is_the_baselines(session.trace, baseline, taken)
    # the change shows after the steps taken over (so a resume that ignored the new specs fails)
    diff = np.abs(session.trace.array("topk_probs") - baseline.array("topk_probs"))
    assert diff[:taken].max(initial=0) == 0 and diff[taken:].max() > 1e-3


RECURRENT_CASES = [
    ([], ["hidden:1.2=-1"]),
    ([], ["reset:11"]),
    (["reset:11"], ["reset:11", "reset:30"]),
    (["reset:11"], []),
    ([], ["context:9"]),
    (["hidden:0.3=0.5", "reset:20"], ["hidden:0.3=0.5", "reset:33"]),
    (["context:9"], ["context:9", "reset:25"]),
]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(("old", "new"), RECURRENT_CASES + [([], ["cell:2.4=1.5"])])
def test_a_resumed_recurrent_run_equals_a_run_from_scratch(recurrent, cell, old, new):
    if cell == "gru" and any(s.startswith("cell") for s in old + new):
        pytest.skip("a GRU has no cell state")
    backend = recurrent[cell]
    session, baseline, taken, stepped = resumed(backend, old, new)
    want = run(backend, new)
    T = len(want.trace)
    first = first_changed_step(parse_all(old), parse_all(new))
    assert taken == min(first, T - 1) and stepped == T - taken
    assert_same_run(session, want)
    assert_prefix_is_the_baselines(session.trace, baseline, taken)
    # the state was restored exactly: from there on the run is the one from scratch to the bit
    for key in ("hidden", "gates"):
        np.testing.assert_array_equal(session.trace.array(key), want.trace.array(key))


def test_recurrent_restore_without_states_runs_the_cell(recurrent):
    """Backend.restore with no recorded states recomputes the state (clamps and resets included)."""
    backend = recurrent["lstm"]
    specs = parse_all(["cell:1.1=0.7", "reset:6"])
    want = run(backend, ["cell:1.1=0.7", "reset:6"])
    ids = want.trace.token_ids
    backend.set_interventions(specs)
    keys = backend.restore(ids[:15])
    np.testing.assert_array_equal(keys, np.stack(want.keys[:15]))
    out = backend.step(ids[15])
    np.testing.assert_array_equal(out.internals["cell"], want.trace.array("cell")[15])
    backend.set_interventions(())


def test_nothing_changed_before_the_end_steps_only_the_last_token(recurrent):
    """reset past the text: every step but the last is taken over (the last is read, so the run's
    next-token distribution and its last row are its own)."""
    backend = recurrent["gru"]
    session, baseline, taken, stepped = resumed(backend, [], ["reset:500"])
    assert taken == len(baseline) - 1 and stepped == 1
    assert_same_run(session, run(backend, ["reset:500"]))


def test_the_logit_lens_and_memory_keys_come_through(transformers_):
    backend = transformers_["gpt2"]
    session, baseline, taken, stepped = resumed(backend, [], ["mask:6-9"], logit_lens=True)
    assert taken == 6 and session.trace.has("lens_target_prob")
    assert_same_run(session, run(backend, ["mask:6-9"], logit_lens=True))
    backend.logit_lens = False


def test_a_baseline_over_another_text_or_model_is_read_from_the_start(transformers_, recurrent):
    backend = transformers_["gpt2"]
    baseline = run(backend, []).trace
    session = Session(backend, interventions=parse_all(["mask:9-12"]))
    other_text = backend.encode("The quick brown cat").ids
    agree = next(t for t, (a, b) in enumerate(zip(other_text, baseline.token_ids, strict=False)) if a != b)
    assert 1 < agree < 9
    # the tokens before the first that differs, less one: the step after those is the text's own
    assert session.resume_from(baseline, 9, "The quick brown cat") == agree - 1
    assert session.pending == len(other_text) - (agree - 1)
    other = Session(recurrent["lstm"])
    assert other.resume_from(baseline, 9, TEXT) == 0  # another model's run
    assert len(other.trace) == 0 and other.pending == len(recurrent["lstm"].encode(TEXT).ids)


def test_first_changed_steps():
    specs = {
        "head:1.0=zero": 0,
        "cell:0.1=2": 0,
        "hidden:1.2=-1": 0,
        "reset:7": 7,
        "mask:3-9": 3,
        "context:12": 12,
    }
    for text, step in specs.items():
        assert first_step(parse_all([text])[0]) == step
        assert first_changed_step((), parse_all([text])) == step
        assert first_changed_step(parse_all([text]), ()) == step
    assert first_changed_step(parse_all(["reset:4", "mask:5-6"]), parse_all(["mask:5-6", "reset:4"])) is None
    assert first_changed_step(parse_all(["reset:9"]), parse_all(["reset:9", "reset:4"])) == 4
    assert first_changed_step(parse_all(["cell:0.1=2"]), parse_all(["cell:0.1=3"])) == 0
    assert first_changed_step(parse_all(["context:5"]), parse_all(["context:8"])) == 5


def test_backends_declare_restore():
    from memviz.backends.base import Backend
    from memviz.backends.recurrent_backend import RecurrentBackend
    from memviz.backends.transformers_lm import TransformerBackend

    assert all(hasattr(cls, "restore") for cls in (Backend, RecurrentBackend, TransformerBackend))


def test_a_run_with_a_long_term_memory_resumes_with_its_retrievals(recurrent, tmp_path):
    """With a memory store, the steps taken over keep their retrieved memories (ids, scores, the
    records the panel shows) and the steps read again recall as from scratch."""
    from memviz.memory.store import MemoryStore

    backend = recurrent["lstm"]
    store = MemoryStore.open(tmp_path / "m.sqlite", backend=backend, create=True)
    try:
        store.add_document(TEXT * 2, "doc", backend)
        session, baseline, taken, stepped = resumed(backend, [], ["reset:14"], memory=store)
        want = run(backend, ["reset:14"], memory=store)
        assert taken == 14 and stepped == len(want.trace) - 14
        assert session.trace.has("memory_ids") and baseline.memory_records
        assert_same_run(session, want)
        assert_prefix_is_the_baselines(session.trace, baseline, taken)
        assert set(session.trace.memory_records) == set(want.trace.memory_records)
    finally:
        store.close()
