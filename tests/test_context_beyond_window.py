"""context:W lets a transformer read past its context window: every step sees only the last W
tokens (positions from 0), so the window no longer bounds the run."""

from __future__ import annotations

import pytest
import torch

from memviz import cli
from memviz.backends.registry import load_backend
from memviz.core.interventions import parse_all
from memviz.core.session import Session
from memviz.errors import MemvizError
from tests.conftest import make_gpt2_dir

POSITIONS = 16
TEXT = "the quick brown fox jumps over the lazy dog and then the dog sleeps " * 3


@pytest.fixture(scope="module")
def short_gpt2(tmp_path_factory):
    return load_backend(str(make_gpt2_dir(tmp_path_factory.mktemp("short") / "g", positions=POSITIONS)))


def test_without_a_window_the_text_is_cut_at_the_models_window(short_gpt2):
    session = Session(short_gpt2)
    warnings = session.feed(TEXT)
    session.run()
    assert len(session.trace) == POSITIONS
    assert any("context window of 16 tokens" in w for w in warnings)


def test_context_w_reads_past_the_window_and_each_step_equals_the_last_w_alone(short_gpt2):
    W = 6
    session = Session(short_gpt2, interventions=parse_all([f"context:{W}"]))
    assert session.feed(TEXT) == []
    session.run()
    ids = short_gpt2.encode(TEXT).ids
    assert len(ids) > 3 * POSITIONS and len(session.trace) == len(ids)
    model = short_gpt2.model
    logprob = session.trace.array("target_logprob")
    for t in (0, W - 1, POSITIONS, len(ids) - 2):  # inside, at and far past the model's window
        window = ids[max(0, t + 1 - W) : t + 1]
        with torch.no_grad():
            logits = model(torch.tensor([window])).logits[0, -1].double()
        want = torch.log_softmax(logits, -1)[ids[t + 1]].item()
        assert logprob[t] == pytest.approx(want, abs=1e-4)


def test_a_window_wider_than_the_model_sees_is_refused(short_gpt2, tmp_path, capsys):
    with pytest.raises(MemvizError, match="sees at most 16 tokens"):
        Session(short_gpt2, interventions=parse_all(["context:17"]))
    folder = short_gpt2.info.source
    out = tmp_path / "t.memviz"
    args = ["trace", "--model", folder, "--text", "the fox", "--intervene", "context:999", "--out", str(out)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "W must be 16 or less" in err and not out.exists()
