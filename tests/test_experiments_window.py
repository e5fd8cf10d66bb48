"""Run -> Experiments...: the window's run writes what `memviz experiment` writes for the same
settings, off the UI thread (a timer keeps firing), with progress; Cancel leaves no folder; a saved
folder opens again with the same rows; a folder that is not an experiment's is refused in one line;
the form is built from the experiment's own argparse options."""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer

from memviz.cli import main
from memviz.experiments.registry import Experiment, experiments
from memviz.experiments.result import read_results
from memviz.ui.experiment_form import OptionsForm, experiment_parser
from memviz.ui.experiments_window import ExperimentsWindow

SENTENCE = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n"
pytestmark = pytest.mark.skipif("timescales" not in experiments(), reason="timescales not registered")


@pytest.fixture(scope="module")
def lstm_folder(tmp_path_factory, lstm_dir_factory) -> Path:
    return lstm_dir_factory(tmp_path_factory.mktemp("xw") / "lstm", layers=2, hidden=12, seed=5)


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "held_out.txt"
    path.write_text(SENTENCE * 3, encoding="utf-8")
    return path


@pytest.fixture
def long_text_file(tmp_path) -> Path:
    path = tmp_path / "long.txt"
    path.write_text(SENTENCE * 80, encoding="utf-8")  # 5,600 characters: a run of some seconds
    return path


@pytest.fixture
def make_xwindow(qtbot, settings):
    made: list[ExperimentsWindow] = []

    def make(model: Path, parent_folder: Path) -> ExperimentsWindow:
        window = ExperimentsWindow(settings, None, str(model))
        qtbot.addWidget(window)
        window.folder_edit.setText(str(parent_folder))
        window.select_experiment("timescales")
        window.show()
        made.append(window)
        return window

    yield make
    for window in made:
        window.shutdown()


def run_to_end(qtbot, window: ExperimentsWindow, timeout: int = 60_000) -> Path:
    with qtbot.waitSignal(window.finished, timeout=timeout) as blocker:
        assert window.start() is not None, window.status_label.text()
    return Path(blocker.args[0])


def test_a_run_from_the_window_writes_what_the_command_line_writes(
    qtbot, make_xwindow, lstm_folder, text_file, tmp_path
):
    window = make_xwindow(lstm_folder, tmp_path / "runs")
    window.text_edit.setText(str(text_file))
    window.options_form.set_values({"threshold": "0.8", "top": "5"})
    window.seed_spin.setValue(3)
    reports = []
    window.progress_bar.valueChanged.connect(reports.append)
    folder = run_to_end(qtbot, window)

    assert folder.parent == tmp_path / "runs" and folder.name.startswith("timescales-")
    cli_out = tmp_path / "cli"
    args = ["experiment", "timescales", "--model", str(lstm_folder), "--text-file", str(text_file)]
    args += [
        "--out",
        str(cli_out),
        "--threshold",
        "0.8",
        "--top",
        "5",
        "--seed",
        "3",
        "--quiet",
        "--no-figure",
    ]
    assert main(args) == 0
    assert (folder / "results.csv").read_bytes() == (cli_out / "results.csv").read_bytes()
    ours, theirs = (json.loads((f / "results.json").read_text()) for f in (folder, cli_out))
    ours.pop("date"), theirs.pop("date")
    assert ours == theirs
    assert ours["settings"]["threshold"] == 0.8 and ours["settings"]["top"] == 5
    assert len(ours["extra"]["per_model"]["lstm"]["top_units"]) == 5
    for ext in ("svg", "pdf", "png"):  # the figure files, as the command line saves them
        assert (folder / f"figure.{ext}").stat().st_size > 0

    # shown: the figure, and results.csv's rows in the table
    view = window.results_view
    assert view is not None and list(view.figures) == ["figure"]
    with open(folder / "results.csv", newline="") as handle:
        table = list(csv.reader(handle))
    assert view.table_model.rowCount() == len(table) - 1 > 0
    assert [view.table_model.headerData(c, Qt.Orientation.Horizontal) for c in range(len(table[0]))] == table[
        0
    ]
    assert reports and window.progress_bar.value() == window.progress_bar.maximum()
    assert "\n" not in window.status_label.text() and str(folder) in window.status_label.text()


def test_cancel_mid_run_writes_nothing(qtbot, make_xwindow, lstm_folder, long_text_file, tmp_path):
    parent = tmp_path / "runs"
    window = make_xwindow(lstm_folder, parent)
    window.text_edit.setText(str(long_text_file))
    seen: list[tuple[int, int, str]] = []

    def on_progress(done: int, total: int, text: str) -> None:
        seen.append((done, total, text))
        if "reading" in text and 0 < done < total:
            window.cancel()

    window.job_started.connect(lambda j: j.progress.connect(on_progress))  # before it runs
    with qtbot.waitSignal(window.failed, timeout=60_000) as blocker:
        job = window.start()
    assert blocker.args == ["cancelled: nothing was written"]
    assert any("reading" in t and 0 < d < n for d, n, t in seen)  # it stopped mid-text
    assert job.cancelled and job.result is None
    assert not parent.exists() or list(parent.iterdir()) == []
    assert window.results_view is None and window.run_button.isEnabled()


@pytest.mark.skipif("copy" not in experiments(), reason="copy not registered")
def test_cancel_stops_an_experiment_that_only_reports_progress(qtbot, make_xwindow, lstm_folder, tmp_path):
    """copy reads no cancel flag: the progress reporter itself stops it at its next report."""
    parent = tmp_path / "runs"
    window = make_xwindow(lstm_folder, parent)
    window.select_experiment("copy")
    window.options_form.set_values({"n": "8", "trials": "2", "distances": "0,1,2,4,8,16,32,64"})
    seen: list[tuple[int, int, str]] = []
    jobs = []

    def on_progress(done: int, total: int, text: str) -> None:  # on the job's thread: no race with the end
        seen.append((done, total, text))
        if "distance" in text:  # a distance was measured: Cancel, as the button does
            jobs[0].cancel()

    def connect(job) -> None:  # before the job runs
        jobs.append(job)
        job.progress.connect(on_progress, Qt.ConnectionType.DirectConnection)

    window.job_started.connect(connect)
    with qtbot.waitSignal(window.failed, timeout=60_000) as blocker:
        window.start()
    assert jobs[0].cancelled and jobs[0].result is None
    assert blocker.args == ["cancelled: nothing was written"]
    assert all(d < n for d, n, t in seen if "copy" in t)  # it never reported the last distance done
    assert not parent.exists() or list(parent.iterdir()) == []


def test_the_ui_thread_keeps_running_while_an_experiment_runs(
    qtbot, make_xwindow, lstm_folder, long_text_file, tmp_path
):
    window = make_xwindow(lstm_folder, tmp_path / "runs")
    window.text_edit.setText(str(long_text_file))
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()) if window.running else None)
    timer.start()
    started = time.monotonic()
    run_to_end(qtbot, window)
    elapsed = time.monotonic() - started
    timer.stop()
    assert len(ticks) >= 5, f"{len(ticks)} ticks in {elapsed:.2f} s"
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert max(gaps, default=0.0) < 1.0  # never held for long: the work is on another thread


def test_a_saved_folder_opens_again_with_the_same_rows(qtbot, make_xwindow, lstm_folder, text_file, tmp_path):
    window = make_xwindow(lstm_folder, tmp_path / "runs")
    window.text_edit.setText(str(text_file))
    folder = run_to_end(qtbot, window)

    other = make_xwindow(lstm_folder, tmp_path / "elsewhere")
    with qtbot.waitSignal(other.opened, timeout=5_000):
        view = other.open_results(folder)
    assert view is other.results_view and list(view.figures) == ["figure"]
    with open(folder / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    model = view.table_model
    assert model.rowCount() == len(rows)
    names = model.names
    for r, row in enumerate(rows):  # each cell against the CSV's own text, read here
        for c, name in enumerate(names):
            value = model.data(model.index(r, c), Qt.ItemDataRole.UserRole)  # the value read back
            if name in ("mean_gate", "time_constant"):
                assert value == float(row[name])
            elif name in ("layer", "unit", "hold_steps", "hold_start", "rank"):
                assert value == int(row[name])
            elif name == "capped":
                assert value == (row[name] == "1")
            else:
                assert value == row[name]
    assert read_results(folder).rows == [model.result.rows[i] for i in range(model.rowCount())]

    # Export figure...: the figure on show through the export renderer, PNG at a scale, SVG as text
    from PySide6.QtGui import QImage

    figure = view.figures["figure"]
    qtbot.waitUntil(figure.isVisible)
    qtbot.wait(50)  # laid out: the export takes the on-screen size
    png = view.export_figure(tmp_path / "fig.png", scale=2.0)
    one = view.export_figure(tmp_path / "fig1.png", scale=1.0)
    image, image1 = QImage(str(png)), QImage(str(one))
    assert image1.width() == max(320, figure.width()) and image.width() == 2 * image1.width()
    assert image.height() == 2 * image1.height()
    svg = view.export_figure(tmp_path / "fig.svg").read_text(encoding="utf-8")
    assert "<svg" in svg and "time constant" in svg  # the axis label as real text


def test_a_folder_that_is_not_an_experiments_is_refused_in_one_line(
    qtbot, make_xwindow, lstm_folder, tmp_path
):
    window = make_xwindow(lstm_folder, tmp_path / "runs")
    plain = tmp_path / "holiday photos"
    plain.mkdir()
    (plain / "notes.txt").write_text("not an experiment")
    assert window.open_results(plain) is None
    line = window.status_label.text()
    assert "\n" not in line and str(plain) in line and "not a memviz experiment" in line
    assert window.results_view is None
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text('{"format": "memviz-experiment", "format_version": 1}')
    assert window.open_results(broken) is None
    assert "\n" not in window.status_label.text() and "results.json" in window.status_label.text()


def test_a_bad_option_is_refused_in_one_line_before_anything_runs(qtbot, make_xwindow, lstm_folder, tmp_path):
    window = make_xwindow(lstm_folder, tmp_path / "runs")
    window.options_form.set_values({"threshold": "1.5"})
    assert window.start() is None
    line = window.status_label.text()
    assert "threshold" in line and "\n" not in line
    assert not (tmp_path / "runs").exists()
    window.set_models([])
    window.options_form.set_values({"threshold": "0.9"})
    assert window.start() is None and "add a model" in window.status_label.text()


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=7, help="how many")
    parser.add_argument("--kind", choices=("a", "b"), default="a", help="which kind")
    parser.add_argument("--loud", action="store_true", help="say more")
    parser.add_argument("--ratios", type=lambda t: [float(v) for v in t.split(",")], default=[0.5, 1.0])
    parser.add_argument("--store", action="append", metavar="STORE", help="one per model")


def test_the_form_is_the_experiments_argparse_options(qtbot):
    spec = Experiment(name="probe", help="a probe", run=lambda b, a: None, figure="x:Y", add_options=_options)
    form = OptionsForm(spec)
    qtbot.addWidget(form)
    assert list(form.fields) == ["count", "kind", "loud", "ratios", "store"]
    assert form.fields["count"].widget.text() == "7" and form.fields["ratios"].widget.text() == "0.5,1"
    assert form.fields["kind"].widget.count() == 2 and form.fields["count"].widget.toolTip() == "how many"
    assert form.argv() == []  # every field at its default: nothing passed, the parser's defaults apply
    form.set_values({"count": "-3", "kind": "b", "loud": "1", "ratios": "0.25,2", "store": "s1; s2"})
    common = ["--model", "m", "--out", "o"]
    ours = experiment_parser(spec).parse_args(common + form.argv())
    cli = argparse.ArgumentParser()
    from memviz.export.experiment_cli import add_common_options

    add_common_options(cli)
    _options(cli)
    theirs = cli.parse_args(
        common
        + ["--count", "-3", "--kind", "b", "--loud", "--ratios", "0.25,2"]
        + ["--store", "s1", "--store", "s2"]
    )
    assert vars(ours) == vars(theirs)
    assert ours.count == -3 and ours.ratios == [0.25, 2.0] and ours.store == ["s1", "s2"]


def test_run_experiments_opens_the_window_with_the_apps_theme(
    make_window, qtbot, tmp_path, lstm_folder, text_file
):
    window = make_window()
    action = window.window_actions["experiments"]
    assert action in window.run_menu.actions()
    assert window.window_actions["open_experiment"] in window.file_menu.actions()
    action.trigger()
    xw = window.experiments_window
    assert xw is not None and xw.isVisible() and not xw.isModal()
    assert xw.state().theme == window.view.state.theme
    assert set(xw.specs) == set(experiments())  # every registered experiment is offered
    assert [xw.experiment_combo.itemData(i) for i in range(xw.experiment_combo.count())] == list(
        experiments()
    )
    xw.set_models([str(lstm_folder)])
    xw.select_experiment("timescales")
    xw.text_edit.setText(str(text_file))
    xw.folder_edit.setText(str(tmp_path / "runs"))
    run_to_end(qtbot, xw)
    figure = xw.results_view.figures["figure"]
    window.set_theme("talk")
    assert figure.view.state.theme == "talk"
    assert figure.canvas.backgroundBrush().color().name() == "#ffffff"
    window.set_theme("dark")
    assert figure.canvas.backgroundBrush().color().name() != "#ffffff"
    assert window.open_experiment_results(tmp_path / "nothing here") is None
    assert "\n" not in xw.status_label.text()


@pytest.mark.parametrize("name", list(experiments()))
def test_every_experiments_form_reads_as_its_command_line(qtbot, name):
    """Each registered experiment (new ones too) gets a form whose untouched fields leave every
    option at the command line's default, and whose required ones are asked for."""
    from memviz.export.experiment_cli import register

    spec = experiments()[name]
    form = OptionsForm(spec)
    qtbot.addWidget(form)
    required = {dest: "x" for dest, field in form.fields.items() if field.action.required}
    form.set_values(required)
    common = ["--model", "m", "--out", "o"] + (["--text-file", "t.txt"] if spec.needs_text else [])
    ours = vars(experiment_parser(spec).parse_args(common + form.argv()))
    top = argparse.ArgumentParser()
    register(top.add_subparsers(dest="command"))
    given = [arg for dest in required for arg in (form.fields[dest].flag, "x")]
    theirs = vars(top.parse_args(["experiment", name, *common, *given]))
    for key in ("command", "experiment", "func"):
        theirs.pop(key, None)
    assert ours == theirs
