"""`memviz compare`: two real runs over the same tokens (two tiny GPT-2s sharing a tokenizer); its CSV
holds the traces' own numbers, its KL is computed here independently; bad input is one line, exit 2."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from memviz.cli import main
from memviz.core.trace import Trace
from memviz.export.compare import COLUMNS, compare_traces

TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, gpt2_dir_factory, run_session):
    root = tmp_path_factory.mktemp("compare")
    paths = {}
    for name, seed in (("a", 0), ("b", 1)):
        folder = gpt2_dir_factory(root / f"gpt2-{name}", seed=seed)  # same tokenizer, other weights
        paths[name] = run_session(folder, TEXT).trace.save(root / f"{name}.memviz")
    paths["short"] = run_session(root / "gpt2-b", TEXT[:30]).trace.save(root / "short.memviz")
    return paths


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def kl_by_hand(ids_a, p_a, ids_b, p_b) -> tuple[float, int]:
    pa = {int(i): float(p) for i, p in zip(ids_a, p_a, strict=True)}
    pb = {int(i): float(p) for i, p in zip(ids_b, p_b, strict=True)}
    shared = sorted(set(pa) & set(pb))
    if not shared:
        return float("nan"), 0
    za, zb = sum(pa[i] for i in shared), sum(pb[i] for i in shared)
    return sum(pa[i] / za * np.log((pa[i] / za) / (pb[i] / zb)) for i in shared), len(shared)


def test_csv_holds_the_traces_numbers(runs, tmp_path, capsys):
    out, figure = tmp_path / "diff.csv", tmp_path / "diff.svg"
    assert main(["compare", str(runs["a"]), str(runs["b"]), "--out", str(out), "--figure", str(figure)]) == 0
    assert "top-1 changed" in capsys.readouterr().out
    a, b = Trace.load(runs["a"]), Trace.load(runs["b"])
    header, rows = read_rows(out)
    assert tuple(header) == COLUMNS
    assert len(rows) == len(a) == len(b)
    col = {name: i for i, name in enumerate(header)}
    la, lb = a.array("target_logprob"), b.array("target_logprob")
    for t, row in enumerate(rows):
        assert int(row[col["step"]]) == t and row[col["token"]] == a.token_label(t)
        if t == len(a) - 1:  # no next token
            assert np.isnan(float(row[col["logp_a"]])) and row[col["next_token"]] == ""
        else:
            assert row[col["next_token"]] == a.token_label(t + 1)
            assert float(row[col["logp_a"]]) == pytest.approx(float(la[t]), abs=1e-6)
            assert float(row[col["logp_b"]]) == pytest.approx(float(lb[t]), abs=1e-6)
            assert float(row[col["diff"]]) == pytest.approx(float(lb[t]) - float(la[t]), abs=1e-6)
        top_a, top_b = int(a.array("topk_ids")[t, 0]), int(b.array("topk_ids")[t, 0])
        assert row[col["top1_a"]] == a.text_of(top_a) and row[col["top1_b"]] == b.text_of(top_b)
        assert int(row[col["top1_changed"]]) == int(top_a != top_b)
        kl, shared = kl_by_hand(
            a.array("topk_ids")[t], a.array("topk_probs")[t], b.array("topk_ids")[t], b.array("topk_probs")[t]
        )
        assert int(row[col["kl_candidates"]]) == shared
        assert float(row[col["kl_a_b"]]) == pytest.approx(kl, abs=1e-6, nan_ok=True)
        assert float(row[col["entropy_a"]]) == pytest.approx(float(a.array("entropy")[t]), abs=1e-6)
        assert float(row[col["entropy_b"]]) == pytest.approx(float(b.array("entropy")[t]), abs=1e-6)
    assert any(int(r[col["top1_changed"]]) for r in rows)  # two different models: a test that can fail
    svg = figure.read_text()
    assert svg.startswith("<?xml") and "log p" in svg


def test_a_run_against_itself(runs, tmp_path):
    a = Trace.load(runs["a"])
    c = compare_traces(a, a)
    known = ~np.isnan(c.diff)
    assert known.sum() == len(a) - 1 and (c.diff[known] == 0).all()
    np.testing.assert_allclose(c.kl[~np.isnan(c.kl)], 0.0, atol=1e-9)
    assert not c.top1_changed.any()
    assert main(["compare", str(runs["a"]), str(runs["a"]), "--figure", str(tmp_path / "same.png")]) == 0
    assert (tmp_path / "same.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prefix_compares_the_shared_tokens(runs, capsys):
    short, b = Trace.load(runs["short"]), Trace.load(runs["b"])
    c = compare_traces(b, short, prefix=True)
    n = len(short)
    assert 0 < n < len(b) and c.steps <= n
    assert b.token_ids[: c.steps] == short.token_ids[: c.steps]
    np.testing.assert_array_equal(c.logp_a[: c.steps - 1], b.array("target_logprob")[: c.steps - 1])
    assert np.isnan(c.logp_a[c.steps - 1])  # past the prefix' end the next tokens are not shared


def test_old_traces_fall_back_to_their_candidates(runs, tmp_path, capsys):
    arrays = dict(np.load(runs["a"], allow_pickle=False))
    old = {k: v for k, v in arrays.items() if k not in ("target_logprob", "entropy")}
    path = tmp_path / "old.memviz"
    with open(path, "wb") as handle:  # a file name without .npz: numpy would add it
        np.savez(handle, **old)
    assert main(["compare", str(path), str(runs["a"]), "--out", str(tmp_path / "old.csv")]) == 0
    assert "no target_logprob" in capsys.readouterr().err
    a = Trace.load(runs["a"])
    c = compare_traces(Trace.load(path), a)
    for t in range(len(a) - 1):
        nxt = a.token_ids[t + 1]
        ids = a.array("topk_ids")[t]
        if nxt in ids:
            assert c.logp_a[t] == pytest.approx(
                np.log(a.array("topk_probs")[t][list(ids).index(nxt)]), abs=1e-6
            )
        else:
            assert np.isnan(c.logp_a[t])


@pytest.mark.parametrize(
    "case, message",
    [
        ("different", "read different tokens"),
        ("missing", "no such trace file"),
        ("not_a_trace", "not a memviz trace"),
        ("bad_figure", "cannot tell the format"),
    ],
)
def test_bad_input_is_one_line(case, message, runs, tmp_path, capsys, rnn_dir_factory, run_session):
    a, b = str(runs["a"]), str(runs["b"])
    extra: list[str] = []
    if case == "different":
        folder = rnn_dir_factory(tmp_path / "lstm", cell="lstm", sizes=(8, 8))  # char-level: other tokens
        b = str(run_session(folder, TEXT).trace.save(tmp_path / "lstm.memviz"))
    elif case == "missing":
        b = str(tmp_path / "nope.memviz")
    elif case == "not_a_trace":
        (tmp_path / "text.memviz").write_text("hello")
        b = str(tmp_path / "text.memviz")
    else:
        extra = ["--figure", str(tmp_path / "diff.bmp")]
    assert main(["compare", a, b, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
