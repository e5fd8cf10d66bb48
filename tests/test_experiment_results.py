"""The experiments' folders (results.csv + results.json), `memviz experiment` end to end, and the
figures at scales 1 and 2."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from memviz.cli import main
from memviz.errors import MemvizError
from memviz.experiments.result import ExperimentResult, read_meta, read_results, write_results


def sample_result() -> ExperimentResult:
    return ExperimentResult(
        name="copy",
        settings={"n": 5, "seed": 3, "distances": [0, 2], "filler": "random", "flag": True},
        models=[{"name": "m,1", "fingerprint": "abc", "kind": "transformer"}],
        columns={
            "model": "the model",
            "distance": "d",
            "loss": "nats",
            "note": "text",
            "sem": "may be empty",
        },
        rows=[
            {"model": "m,1", "distance": 0, "loss": 0.1 + 0.2, "note": 'a "quoted", text', "sem": None},
            {"model": "m,1", "distance": 2, "loss": float("nan"), "note": "", "sem": 1e-300},
        ],
        extra={"scores": np.arange(6, dtype=np.float32).reshape(2, 3), "gap": float("inf")},
    )


def test_results_round_trip(tmp_path):
    out = tmp_path / "run"
    written = write_results(sample_result(), out)
    assert [p.name for p in written] == ["results.csv", "results.json"]
    back = read_results(out)
    assert back.name == "copy" and back.settings == sample_result().settings
    assert back.models == sample_result().models and back.columns == sample_result().columns
    first, second = back.rows
    assert first == {
        "model": "m,1",
        "distance": 0,
        "loss": 0.1 + 0.2,
        "note": 'a "quoted", text',
        "sem": None,
    }
    assert second["distance"] == 2 and math.isnan(second["loss"]) and second["sem"] == 1e-300
    assert isinstance(first["distance"], int)
    assert back.extra == {"scores": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], "gap": None}  # strict JSON
    document = json.loads((out / "results.json").read_text())
    assert document["memviz_version"] and document["date"].startswith("20")
    assert read_meta(out)["memviz_version"] == document["memviz_version"]
    assert (out / "results.csv").read_text().splitlines()[0] == "model,distance,loss,note,sem"


def test_a_folder_that_is_not_an_experiment_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(MemvizError, match="not a memviz experiment"):
        write_results(sample_result(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(MemvizError, match="is a file"):
        write_results(sample_result(), file)
    with pytest.raises(MemvizError, match="does not exist"):
        write_results(sample_result(), tmp_path / "no" / "such")
    write_results(sample_result(), tmp_path / "again")
    write_results(sample_result(), tmp_path / "again")  # an experiment's folder is replaced


def test_a_failed_write_leaves_the_previous_results(tmp_path, monkeypatch):
    write_results(sample_result(), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full_disk(_fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    changed = sample_result()
    changed.rows[0]["loss"] = 9.0
    with pytest.raises(MemvizError, match="No space left"):
        write_results(changed, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary left either


def test_rows_must_match_the_columns(tmp_path):
    bad = sample_result()
    del bad.rows[0]["note"]
    with pytest.raises(MemvizError, match="missing"):
        write_results(bad, tmp_path)
    bad = sample_result()
    bad.columns.pop("model")
    with pytest.raises(MemvizError, match="'model'"):
        write_results(bad, tmp_path)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "results.json").unlink(), "no results.json"),
        (lambda d: (d / "results.csv").unlink(), "no results.csv"),
        (lambda d: (d / "results.json").write_text("{not json"), "cannot read"),
        (lambda d: (d / "results.json").write_text('{"format": "other"}'), "not a memviz experiment"),
        (lambda d: (d / "results.csv").write_text("model,x\n"), "header"),
        (lambda d: _cut_csv(d), "cut short"),
        (lambda d: _edit_csv(d, "0.30000000000000004", "lots"), "not a float"),
        (lambda d: _edit_json(d, "column_types", {"model": "str"}), "column_types"),
    ],
)
def test_a_malformed_folder_is_one_clear_error(tmp_path, damage, message):
    write_results(sample_result(), tmp_path)
    damage(tmp_path)
    with pytest.raises(MemvizError, match=message) as caught:
        read_results(tmp_path)
    assert "\n" not in str(caught.value)


def _cut_csv(folder):
    lines = (folder / "results.csv").read_text().splitlines()
    (folder / "results.csv").write_text("\n".join(lines[:-1]) + "\n")


def _edit_csv(folder, old, new):
    path = folder / "results.csv"
    path.write_text(path.read_text().replace(old, new))


def _edit_json(folder, key, value):
    path = folder / "results.json"
    document = json.loads(path.read_text())
    document[key] = value
    path.write_text(json.dumps(document))


# -- the command ------------------------------------------------------------------------------------
def test_memviz_experiment_copy_writes_results_and_figures(tmp_path, gpt2_dir, lstm_dir, capsys):
    out = tmp_path / "copy"
    args = ["experiment", "copy", "--model", str(gpt2_dir), "--model", str(lstm_dir), "--out", str(out)]
    assert main([*args, "--n", "5", "--trials", "2", "--distances", "0,3", "--seed", "7"]) == 0
    names = sorted(p.name for p in out.iterdir())
    figures = [f"{stem}.{fmt}" for stem in ("figure", "induction") for fmt in ("pdf", "png", "svg")]
    assert names == sorted(["results.csv", "results.json", *figures])
    result = read_results(out)
    assert result.settings["seed"] == 7 and result.settings["model_specs"] == [str(gpt2_dir), str(lstm_dir)]
    assert len(result.rows) == 4 and set(result.column("model")) == {"tiny-gpt2", "tiny-lstm"}
    assert "wrote" in capsys.readouterr().out


def test_memviz_experiment_refuses_before_loading(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    code = main(["experiment", "copy", "--model", "no-such-model-folder/x/y", "--out", str(tmp_path)])
    assert code == 2
    assert "not a memviz experiment" in capsys.readouterr().err  # the folder, not the model
    assert main(["experiment", "context", "--model", "m", "--out", str(tmp_path / "new")]) == 2  # no text
    new = tmp_path / "made"
    assert main(["experiment", "copy", "--model", "no-such-model-folder/x/y", "--out", str(new)]) == 2
    assert not new.exists()  # the folder made for the run, left empty by the error, is gone


@pytest.mark.parametrize(
    "args, says",
    [
        (["copy", "--distances", "0,x"], "is not a comma-separated list of whole numbers"),
        (["copy", "--distances=-1,4"], "-1 is out of range: 0 to 1000000000"),
        (["context", "--windows", "0,8"], "0 is out of range: 1 to 1000000000"),
        (["knn", "--k", "0"], "0 is out of range: 1 to 4096"),
        (["knn", "--lambdas", "0.5,nan"], "nan is out of range: 0 to 1"),
    ],
)
def test_bad_lists_are_refused_while_parsing(tmp_path, capsys, args, says):
    """Lists of numbers are checked by argparse (memviz.options.number_list): one line, exit 2,
    before any model loads or any folder is made."""
    assert main(["experiment", *args, "--model", "no-such-model", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and err[0].startswith("memviz: error: argument --")
    assert not (tmp_path / "out").exists()


def test_an_interrupted_experiment_writes_nothing(tmp_path, gpt2_dir, monkeypatch):
    from memviz.experiments import copy as copy_experiment

    out = tmp_path / "copy"
    assert (
        main(
            [
                "experiment",
                "copy",
                "--model",
                str(gpt2_dir),
                "--out",
                str(out),
                "--n",
                "4",
                "--trials",
                "2",
                "--distances",
                "0",
                "--no-figure",
            ]
        )
        == 0
    )
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(copy_experiment, "measure_model", interrupted)
    assert main(["experiment", "copy", "--model", str(gpt2_dir), "--out", str(out), "--n", "5"]) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# -- the figures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def results(gpt2_dir, lstm_dir, sample_text):
    from memviz.backends.registry import load_backend
    from memviz.cli import build_parser
    from memviz.experiments import context, copy

    backends = [load_backend(str(gpt2_dir)), load_backend(str(lstm_dir))]
    parser = build_parser()
    copy_args = parser.parse_args(
        ["experiment", "copy", "--model", "m", "--out", "o", "--n", "5", "--trials", "3"]
    )
    context_args = parser.parse_args(
        ["experiment", "context", "--model", "m", "--out", "o", "--text-file", "t", "--positions", "3"]
    )
    context_args.text = sample_text[:120]
    return {"copy": copy.run(backends, copy_args), "context": context.run(backends, context_args)}


def rgb(image, size=None) -> np.ndarray:
    from PIL import Image
    from PIL.ImageQt import fromqimage

    picture = fromqimage(image).convert("RGB")
    if size is not None:
        picture = picture.resize(size, Image.Resampling.BOX)
    return np.asarray(picture, dtype=np.float64)


@pytest.mark.parametrize(
    "experiment, figure",
    [("copy", "CopyFigure"), ("copy", "InductionFigure"), ("context", "ContextFigure")],
)
def test_figures_render_at_scale_one_and_two(results, experiment, figure):
    from memviz.export.experiment_figure import figure_class, renderer_for

    cls = figure_class(f"memviz.export.experiment_figures:{figure}")
    result = results[experiment]
    assert cls.applies(result)
    renderer = renderer_for(cls, result, theme="talk", size=(900, 500))
    try:
        one, two = renderer.image(1.0), renderer.image(2.0)
        assert (one.width(), one.height()) == (900, 500)
        assert (two.width(), two.height()) == (1800, 1000)
        # the same layout with twice the pixels, not an enlarged crop: antialiased edges differ a
        # little everywhere (text-heavy figures up to about 4.2 of 255 on average), a moved or enlarged
        # part differs a lot in some 16 px block (as in test_export_scale)
        assert np.abs(rgb(two, (900, 500)) - rgb(one)).mean() < 6.0
        blocks = (900 // 16, 500 // 16)
        assert np.abs(rgb(two, blocks) - rgb(one, blocks)).max() < 50.0
        assert renderer.title()
        assert renderer.svg_bytes().startswith(b"<?xml") and renderer.pdf_bytes().startswith(b"%PDF")
    finally:
        renderer.close()


def test_the_copy_figure_draws_the_losses(results):
    from memviz.export.experiment_figure import renderer_for
    from memviz.export.experiment_figures import CopyFigure

    result = results["copy"]
    renderer = renderer_for(CopyFigure, result)
    try:
        curves = [item for item in renderer.panel.plot.listDataItems() if item.name() == "tiny-gpt2"]
        x, y = curves[0].getData()
        rows = [r for r in result.rows if r["model"] == "tiny-gpt2"]
        assert np.allclose(10**x, [r["lookback"] for r in rows])  # a log axis holds log10(x)
        assert np.allclose(y, [r["loss_second"] for r in rows])
    finally:
        renderer.close()


def test_the_induction_figure_is_left_out_without_a_transformer(results):
    from memviz.export.experiment_figures import InductionFigure

    lstm_only = ExperimentResult("copy", {}, [], {"model": ""}, [], {"induction": {}})
    assert not InductionFigure.applies(lstm_only)
    assert InductionFigure.applies(results["copy"])
