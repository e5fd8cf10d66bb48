"""The Session: feeding, stepping, generating, limits, and what it records in the Trace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memviz.backends.lstm import load_lstm
from memviz.backends.registry import load_backend
from memviz.core.sampling import SamplingConfig
from memviz.core.session import Session
from memviz.core.trace import KEPT_CANDIDATES
from memviz.errors import MemvizError


@pytest.fixture
def session(lstm_dir):
    return Session(load_backend(str(lstm_dir)), sampling=SamplingConfig(temperature=0.8, seed=2))


def test_feed_run_and_trace(session, lstm_dir):
    text = "The lazy dog."
    assert session.feed(text) == []
    assert session.pending == len(text)
    session.generate(5)
    assert session.pending == len(text) + 5
    ticks = []
    assert session.run(progress=ticks.append) == len(text) + 5
    assert ticks == list(range(1, len(text) + 6))
    trace = session.trace
    assert len(trace) == len(text) + 5 and session.pending == 0
    assert trace.prompt_tokens == len(text)
    assert trace.generated == [False] * len(text) + [True] * 5
    assert "".join(trace.token_text[: len(text)]) == text
    assert trace.sampling == {"strategy": "sample", "temperature": 0.8, "top_k": 0, "top_p": 1.0, "seed": 2}
    assert trace.memory is None
    assert session.step() is None  # nothing pending

    # The kept candidates are the model's distribution after each token, best first.
    model, tokenizer, _ = load_lstm(lstm_dir)
    with torch.no_grad():
        logits = model(torch.tensor([trace.token_ids]))[0][0]
    probs = torch.softmax(logits.double(), -1).numpy()
    ids, kept = trace.array("topk_ids"), trace.array("topk_probs")
    assert ids.shape == (len(trace), KEPT_CANDIDATES) and KEPT_CANDIDATES >= 10
    np.testing.assert_allclose(kept, np.take_along_axis(probs, ids, 1), atol=1e-5)
    np.testing.assert_array_equal(ids[:, 0], probs.argmax(1))
    np.testing.assert_allclose(session.last_distribution, probs[-1], atol=1e-5)
    assert len(session.keys) == len(trace)


def test_feeding_more_text_continues_the_run(session):
    session.feed("ab")
    session.run()
    session.feed("cd")
    assert session.trace.prompt_tokens == 4
    session.run()
    assert "".join(session.trace.token_text) == "abcd"
    assert session.backend.position == 4


def test_bad_requests(session):
    with pytest.raises(MemvizError, match="empty"):
        session.feed("")
    with pytest.raises(MemvizError):
        session.generate(-1)
    session.generate(3)
    with pytest.raises(MemvizError, match="read some text first"):
        session.step()


def test_cancel_keeps_what_was_read(session):
    session.feed("hello world")
    session.generate(10)
    for _ in range(3):
        session.step()
    session.cancel()
    assert session.pending == 0 and len(session.trace) == 3
    assert session.run(cancelled=lambda: True) == 0


def test_reset_starts_over(session):
    session.feed("fox fox")
    session.run()
    session.reset()
    assert len(session.trace) == 0 and session.backend.position == 0 and len(session.keys) == 0
    assert session.warnings == [] and session.stop_reason is None


def test_set_sampling_applies_from_now_on(session):
    session.feed("fox")
    session.run()
    session.set_sampling(SamplingConfig(temperature=0))
    assert session.trace.sampling["strategy"] == "greedy"
    session.generate(3)
    session.run()
    assert session.trace.generated[-3:] == [True] * 3


def test_max_tokens_cuts_long_text(lstm_dir):
    session = Session(load_backend(str(lstm_dir)), max_tokens=10)
    warnings = session.feed("x" * 25)
    assert len(warnings) == 1 and "10 of 25" in warnings[0]
    session.generate(5)
    session.run()
    assert len(session.trace) == 10
    assert session.stop_reason and "10 tokens" in session.stop_reason
    session.reset()
    session.feed("ab")
    session.generate(100)
    session.run()
    assert len(session.trace) == 10 and sum(session.trace.generated) == 8


def test_same_seed_same_trace_file(run_session, lstm_dir, tmp_path):
    """A run is reproducible to the byte-identical arrays it saves."""
    paths = []
    for i in range(2):
        sampling = SamplingConfig(temperature=1.2, top_p=0.9, seed=5)
        session = run_session(lstm_dir, "def ", generate=20, sampling=sampling)
        paths.append(session.trace.save(tmp_path / f"{i}.memviz"))
    with np.load(paths[0]) as a, np.load(paths[1]) as b:
        assert a.files == b.files
        assert {"token_ids", "hidden", "cell", "gates", "topk_ids", "topk_probs"} <= set(a.files)
        assert len(a["token_ids"]) == 24
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
