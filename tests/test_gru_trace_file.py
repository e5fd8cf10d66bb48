"""A GRU's trace (three gates, r z n) saves, opens and exports like an LSTM's; a wrong gate count is bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from memviz.cli import main
from memviz.core.trace import Trace
from memviz.errors import MemvizError


@pytest.fixture(scope="module")
def gru_trace(tmp_path_factory, rnn_dir_factory, run_session):
    folder = rnn_dir_factory(tmp_path_factory.mktemp("gru") / "gru", cell="gru")
    return run_session(folder, text="the cat sat on the mat. ").trace


def test_a_saved_gru_trace_opens_with_its_three_gates(gru_trace, tmp_path):
    path = gru_trace.save(tmp_path / "gru.memviz")
    loaded = Trace.load(path)
    assert loaded.model["gate_names"] == ["r", "z", "n"]
    assert loaded.array("gates").shape[2] == 3
    np.testing.assert_array_equal(loaded.array("gates"), gru_trace.array("gates"))


def test_a_saved_gru_trace_exports_from_the_command_line(gru_trace, tmp_path, capsys):
    path = gru_trace.save(tmp_path / "gru.memviz")
    assert (
        main(
            [
                "export",
                "--trace",
                str(path),
                "--panel",
                "gates",
                "--format",
                "png",
                "--out",
                str(tmp_path / "g.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "g.png").stat().st_size > 1000


def test_gates_that_disagree_with_the_gate_names_are_refused(gru_trace, tmp_path):
    arrays = gru_trace.to_arrays()
    manifest = json.loads(str(arrays["manifest"]))
    manifest["model"]["gate_names"] = ["i", "f", "g", "o"]  # says LSTM, holds a GRU's three gates
    arrays["manifest"] = np.array(json.dumps(manifest))
    path = tmp_path / "bad.memviz"
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(MemvizError, match="gates"):
        Trace.load(path)


def test_a_word_models_text_has_its_words_apart(tmp_path):
    trace = Trace(model={"architecture": "gru", "tokenizer": "word", "vocab_size": 10})
    from memviz.core.trace import StepRecord

    for i, word in enumerate(["the", "socket", "module"]):
        trace.append(StepRecord(i, word, False, np.zeros(0, np.int64), np.zeros(0, np.float32)))
    assert trace.text() == "the socket module"
