"""`memviz experiment copy` against hand-written loops over the model's own forward pass."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from memviz.backends.registry import load_backend
from memviz.cli import build_parser
from memviz.errors import MemvizError
from memviz.experiments import copy as copy_experiment
from memviz.experiments.batching import token_pool


def copy_args(*options: str):
    return build_parser().parse_args(["experiment", "copy", "--model", "m", "--out", "o", *options])


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return load_backend(str(gpt2_dir))


@pytest.fixture(scope="module")
def lstm(lstm_dir):
    return load_backend(str(lstm_dir))


def logits_of(backend, ids: list[int]) -> torch.Tensor:
    """[T, V]: the model's own forward pass over one trial (no batching, no experiment code)."""
    x = torch.tensor([ids])
    with torch.no_grad():
        if backend.info.kind == "transformer":
            return backend.model(input_ids=x).logits[0]
        return backend.model(x)[0][0]


def hand_losses(backend, n: int, d: int, trials: int, seed: int, filler: str, score_first: bool):
    """Per trial: mean loss on tokens 1..n-1 of the first copy and on the second copy's tokens."""
    pool = token_pool(backend)
    first, second = [], []
    for trial in range(trials):
        ids = copy_experiment.trial_tokens(pool, n, d, seed, trial, filler).tolist()
        logits = logits_of(backend, ids)
        loss = [
            F.cross_entropy(logits[p - 1 : p], torch.tensor([ids[p]])).item() for p in range(1, len(ids))
        ]  # loss[p - 1]: token p
        first.append(statistics.mean(loss[p - 1] for p in range(1, n)))
        start = n + d
        second.append(
            statistics.mean(loss[p - 1] for p in range(start if score_first else start + 1, start + n))
        )
    return first, second


@pytest.mark.parametrize("which", ["gpt2", "lstm"])
@pytest.mark.parametrize("score_first", [False, True])
def test_copy_losses_equal_a_loop_over_the_forward_pass(request, which, score_first):
    backend = request.getfixturevalue(which)
    options = ["--n", "6", "--trials", "3", "--distances", "0,4,17", "--seed", "5"]
    result = copy_experiment.run([backend], copy_args(*options, *(["--score-first"] if score_first else [])))
    assert [r["distance"] for r in result.rows] == [0, 4, 17]
    for row in result.rows:
        first, second = hand_losses(backend, 6, row["distance"], 3, 5, "random", score_first)
        assert row["loss_second"] == pytest.approx(statistics.mean(second), abs=1e-5)
        assert row["loss_first"] == pytest.approx(statistics.mean(first), abs=1e-5)
        assert row["loss_second_sem"] == pytest.approx(statistics.stdev(second) / 3**0.5, abs=1e-5)
        assert row["copy_gain"] == pytest.approx(row["loss_first"] - row["loss_second"], abs=1e-9)
        assert row["tokens_scored"] == (6 if score_first else 5)
        assert row["lookback"] == 6 + row["distance"]
    assert result.settings["score_first"] is score_first
    assert result.settings["seed"] == 5 and result.settings["filler"] == "random"


def test_trial_tokens_repeat_the_sequence_and_keep_it_across_distances(gpt2):
    pool = token_pool(gpt2)
    specials = set(gpt2.tokenizer.all_special_ids)
    a = copy_experiment.trial_tokens(pool, 7, 0, seed=1, trial=0)
    b = copy_experiment.trial_tokens(pool, 7, 30, seed=1, trial=0)
    assert len(a) == 14 and len(b) == 44
    assert (b[:7] == b[37:]).all() and (a[:7] == b[:7]).all()  # the same sequence at every d
    assert not specials & set(b.tolist())
    assert (copy_experiment.trial_tokens(pool, 7, 30, seed=1, trial=0) == b).all()  # seeded
    assert not (copy_experiment.trial_tokens(pool, 7, 30, seed=2, trial=0) == b).all()
    repeat = copy_experiment.trial_tokens(pool, 7, 9, seed=1, trial=0, filler="repeat")
    assert len(set(repeat[7:16].tolist())) == 1


def test_induction_score_equals_one_from_output_attentions(gpt2):
    n, trials = 6, 3
    result = copy_experiment.run(
        [gpt2], copy_args("--n", str(n), "--trials", str(trials), "--distances", "3,9")
    )
    entry = result.extra["induction"][gpt2.info.name]
    assert entry["distance"] == 3  # the smallest distance
    pool = token_pool(gpt2)
    L, A = gpt2.info.num_layers, gpt2.info.num_heads
    expected = np.zeros((L, A))
    for trial in range(trials):
        ids = copy_experiment.trial_tokens(pool, n, 3, 0, trial)  # the default seed, 0
        with torch.no_grad():
            attentions = gpt2.model(input_ids=torch.tensor([ids.tolist()]), output_attentions=True).attentions
        for layer in range(L):
            for head in range(A):
                for i in range(n - 1):  # second copy's token i -> the token after its first occurrence
                    expected[layer, head] += attentions[layer][0, head, n + 3 + i, i + 1].item()
    expected /= trials * (n - 1)
    assert np.asarray(entry["scores"]) == pytest.approx(expected, abs=1e-6)


def test_recurrent_models_have_no_induction_score_and_reach_2000(lstm):
    result = copy_experiment.run([lstm], copy_args("--n", "4", "--trials", "2"))
    distances = [r["distance"] for r in result.rows]
    assert distances[0] == 0 and distances[-1] == copy_experiment.RECURRENT_MAX_DISTANCE
    assert len(distances) == copy_experiment.DEFAULT_POINTS
    assert result.extra["induction"] == {}


def test_distances_stop_at_the_window(gpt2):
    # window 128: two copies of 10 leave 108 for the gap
    result = copy_experiment.run(
        [gpt2], copy_args("--n", "10", "--trials", "2", "--distances", "0,50,108,200")
    )
    assert [r["distance"] for r in result.rows] == [0, 50, 108]
    assert result.models[0]["max_distance"] == 108
    auto = copy_experiment.run([gpt2], copy_args("--n", "10", "--trials", "2"))
    assert auto.rows[-1]["distance"] == 108 and auto.rows[0]["distance"] == 0
    with pytest.raises(MemvizError, match="do not fit"):
        copy_experiment.run([gpt2], copy_args("--n", "70"))
    with pytest.raises(MemvizError, match="--distances"):
        copy_experiment.run([gpt2], copy_args("--distances", "a,b"))


def test_several_models_share_one_result(gpt2, lstm):
    result = copy_experiment.run([gpt2, lstm], copy_args("--n", "4", "--trials", "2", "--distances", "0,8"))
    assert result.model_names() == [gpt2.info.name, lstm.info.name]
    assert {m["fingerprint"] for m in result.models} == {gpt2.fingerprint(), lstm.fingerprint()}
    assert [r["model"] for r in result.rows] == [gpt2.info.name] * 2 + [lstm.info.name] * 2
