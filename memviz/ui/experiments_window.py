"""Run -> Experiments...: the memory-span experiments (`memviz experiment NAME`) from the app.

A non-modal window: pick the experiment (every one the registry has), the models (the app's model
first; bundled, recent, a folder or a Hugging Face id added), the text it reads (a bundled sample
by default), its options (a form built from its own command-line options, experiment_form.py) and
where the results go (a new timestamped folder under the user's data folder). Run reads the form
with the command line's own parser and runs the experiment as a Job on a thread of its own with its
own copies of the models (experiment_run.py), never on the session's worker: the app's run goes on.
A progress bar follows the experiment's own progress reports; Cancel stops it between two batches
and nothing is written. When it is done the window shows the figures and results.csv
(experiment_results.py), saved with the figure files as the command line saves them; File -> Open
experiment results... (or Open results... here) shows a saved folder again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from memviz.core.view import ViewState
from memviz.errors import MemvizError
from memviz.experiments.registry import Experiment, experiments
from memviz.experiments.result import ExperimentResult, read_results
from memviz.panels.view_model import ViewModel
from memviz.ui.experiment_form import OptionsForm, experiment_parser
from memviz.ui.experiment_models import ModelList, bundled
from memviz.ui.experiment_results import ResultsView
from memviz.ui.experiment_run import (
    Cancelled,
    RunOutcome,
    check_results_folder,
    new_results_folder,
    run_experiment,
)
from memviz.ui.jobs import Job, JobThread, one_line
from memviz.ui.resources import resource_path, style_sheet

DEFAULT_SAMPLE = "samples/asyncio_threads.txt"  # held out from the bundled models' training text
FOLDER_KEY, TEXT_KEY = "experiments/folder", "experiments/text_file"


def default_results_parent() -> Path:
    """Where runs go unless the user chose elsewhere: <user data dir>/memviz/experiments."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("memviz", appauthor=False)) / "experiments"


def first_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else "failed"


def window_rules(state: ViewState) -> str:
    """What the app's style sheet leaves to the platform here (a light options pane and tab page
    under the dark theme's pale text): the theme's own colours."""
    t = state.theme_obj
    border, muted = ("#3a3d42", "#9a9da2") if t.is_dark else ("#bbbbbb", "#555555")
    return f"""
QWidget#experimentOptions, QWidget#figurePage, QWidget#experimentSetup, QScrollArea#setupScroll {{
    background: {t.background};
}}
QLabel#optionHelp {{ color: {muted}; }}
QLabel#figureTitle {{ color: {t.foreground}; font-weight: bold; font-size: {t.font_size + 2}pt; }}
QTabWidget::pane {{ border: 1px solid {border}; background: {t.panel_background}; }}
QTabBar::tab {{
    background: {t.background}; color: {muted}; border: 1px solid {border}; padding: 4px 14px;
}}
QTabBar::tab:selected {{ background: {t.panel_background}; color: {t.foreground}; }}
QScrollBar {{ background: {t.background}; border: none; }}
QScrollBar:vertical {{ width: 12px; }}
QScrollBar:horizontal {{ height: 12px; }}
QScrollBar::handle {{ background: {border}; border-radius: 4px; min-height: 24px; min-width: 24px; }}
QScrollBar::add-line, QScrollBar::sub-line {{ width: 0; height: 0; }}
QScrollBar::add-page, QScrollBar::sub-page {{ background: none; }}
"""


class ExperimentsWindow(QMainWindow):
    """The Experiments window. `finished(folder)` after a run's files are written, `failed(reason)`
    after a failed or cancelled one, `opened(folder)` when a saved folder is shown, `job_started(job)`
    as a run's Job is about to start."""

    finished = Signal(object)
    failed = Signal(str)
    opened = Signal(object)
    job_started = Signal(object)  # the Job, just before it is submitted (its signals can be connected)

    def __init__(
        self,
        settings: QSettings,
        view: ViewModel | None = None,
        model_spec: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("experimentsWindow")
        self.setWindowTitle("Experiments - memviz")
        self.settings = settings
        self.view = view  # the app's: the window follows its theme
        self.specs: dict[str, Experiment] = experiments()
        self.jobs = JobThread("memviz-experiments", self)
        self.job: Job | None = None
        self.outcome: RunOutcome | None = None
        self.results_view: ResultsView | None = None
        self.options_form: OptionsForm | None = None
        self._running_spec: Experiment | None = None
        self._running_args: argparse.Namespace | None = None

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setObjectName("experimentsSplitter")
        scroll = QScrollArea()  # a tall form (large talk fonts, many options) scrolls, never squeezes
        scroll.setObjectName("setupScroll")
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self._build_setup())
        left = QWidget()
        left.setObjectName("experimentLeft")
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(scroll, 1)
        column.addLayout(self._build_run_controls())  # Run stays in sight however tall the form
        left.setMinimumWidth(400)
        splitter.addWidget(left)
        self.results_area = QWidget()
        self.results_layout = QVBoxLayout(self.results_area)
        self.placeholder = QLabel(
            "Run an experiment, or open a saved one's folder: its figures and results.csv show here."
        )
        self.placeholder.setObjectName("resultsPlaceholder")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.results_layout.addWidget(self.placeholder)
        splitter.addWidget(self.results_area)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([460, 940])
        self.setCentralWidget(splitter)
        self.resize(1400, 860)

        if model_spec:
            self.add_model(model_spec)
        elif bundled():
            self.add_model(bundled()[0].name)
        if view is not None:
            view.changed.connect(self._on_view_changed)
        self._theme = self.state().theme
        self.apply_theme()
        self._set_running(False)

    # == building ==========================================================================================
    def _build_setup(self) -> QWidget:
        setup = QWidget()
        setup.setObjectName("experimentSetup")
        setup.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        outer = QVBoxLayout(setup)

        row = QHBoxLayout()
        row.addWidget(QLabel("Experiment"))
        self.experiment_combo = QComboBox()
        self.experiment_combo.setObjectName("experimentCombo")
        for name, spec in self.specs.items():
            self.experiment_combo.addItem(name, name)
            self.experiment_combo.setItemData(self.experiment_combo.count() - 1, spec.help, Qt.ToolTipRole)
        row.addWidget(self.experiment_combo, 1)
        outer.addLayout(row)
        self.help_label = QLabel()
        self.help_label.setObjectName("experimentHelp")
        self.help_label.setWordWrap(True)
        outer.addWidget(self.help_label)

        self.model_list = ModelList(self.settings)
        outer.addWidget(self.model_list)

        text = QGroupBox("Text")
        box = QHBoxLayout(text)
        self.text_edit = QLineEdit(str(self.settings.value(TEXT_KEY, "") or self._default_text()))
        self.text_edit.setObjectName("experimentText")
        self.text_edit.setToolTip("The held-out text the experiment reads (--text-file)")
        self.text_button = QPushButton("Choose...")
        self.text_button.clicked.connect(self.choose_text)
        box.addWidget(self.text_edit, 1)
        box.addWidget(self.text_button)
        self.text_group = text
        outer.addWidget(text)

        options = QGroupBox("Options")
        box = QVBoxLayout(options)
        self.options_box = box  # the form goes first, rebuilt for each experiment
        common = QFormLayout()
        self.seed_spin = QSpinBox()
        self.seed_spin.setObjectName("experimentSeed")
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("The seed of every random choice (--seed)")
        common.addRow("seed", self.seed_spin)
        self.figure_theme = QComboBox()
        self.figure_theme.addItems(["talk", "dark"])
        self.figure_theme.setToolTip("The look of the figure files saved with the results (--theme)")
        self.png_scale = QDoubleSpinBox()
        self.png_scale.setRange(0.25, 8.0)
        self.png_scale.setSingleStep(0.5)
        self.png_scale.setValue(1.0)
        self.png_scale.setToolTip("Device pixels per pixel in the saved PNG (--scale)")
        files = QHBoxLayout()
        files.addWidget(self.figure_theme)
        files.addWidget(QLabel("PNG scale"))
        files.addWidget(self.png_scale)
        files.addStretch(1)
        common.addRow("figure files", files)
        box.addLayout(common)
        outer.addWidget(options)

        out = QGroupBox("Results")
        box = QVBoxLayout(out)
        row = QHBoxLayout()
        self.folder_edit = QLineEdit(str(self.settings.value(FOLDER_KEY, "") or default_results_parent()))
        self.folder_edit.setObjectName("experimentFolder")
        self.folder_edit.setToolTip("Each run writes a new folder <experiment>-<date>-<time> in here")
        self.folder_button = QPushButton("Choose...")
        self.folder_button.clicked.connect(self.choose_folder)
        row.addWidget(self.folder_edit, 1)
        row.addWidget(self.folder_button)
        box.addLayout(row)
        hint = QLabel("each run writes a new folder here: <experiment>-<date>-<time>")
        hint.setObjectName("optionHelp")
        hint.setWordWrap(True)
        box.addWidget(hint)
        outer.addWidget(out)
        outer.addStretch(1)
        self.experiment_combo.currentIndexChanged.connect(self._on_experiment_changed)
        self._on_experiment_changed()
        return setup

    def _build_run_controls(self) -> QVBoxLayout:
        outer = QVBoxLayout()
        outer.setContentsMargins(9, 4, 9, 9)
        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("experimentRun")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("experimentCancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.open_button = QPushButton("Open results...")
        self.open_button.setToolTip("Show a saved experiment's folder again")
        self.open_button.clicked.connect(self.open_results_dialog)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        row.addStretch(1)
        row.addWidget(self.open_button)
        outer.addLayout(row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setObjectName("experimentProgress")
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("")
        self.progress_bar.hide()  # shown from the first run on (empty, it looks like a text box)
        outer.addWidget(self.progress_bar)
        self.status_label = QLabel("")
        self.status_label.setObjectName("experimentStatus")
        self.status_label.setWordWrap(True)  # one line of text; a long one wraps, never widens the column
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.status_label)
        return outer

    # == choices ===========================================================================================
    def state(self) -> ViewState:
        return self.view.state if self.view is not None else ViewState(theme="dark")

    @staticmethod
    def _default_text() -> str:
        path = resource_path(DEFAULT_SAMPLE)
        return str(path) if path else ""

    def spec(self) -> Experiment:
        name = self.experiment_combo.currentData()
        if name not in self.specs:
            raise MemvizError("no experiment chosen")
        return self.specs[name]

    def select_experiment(self, name: str) -> None:
        index = self.experiment_combo.findData(name)
        if index < 0:
            raise MemvizError(f"no experiment {name!r}; experiments: {', '.join(self.specs)}")
        self.experiment_combo.setCurrentIndex(index)

    def _on_experiment_changed(self, _index: int = 0) -> None:
        if not self.specs:
            self.help_label.setText("No experiments are installed.")
            return
        spec = self.spec()
        self.help_label.setText(spec.help)
        self.text_group.setEnabled(spec.needs_text)
        self.text_group.setTitle(
            "Text" if spec.needs_text else f"Text (not used: {spec.name} makes its own tokens)"
        )
        self.text_group.setToolTip("" if spec.needs_text else f"{spec.name} makes its own tokens: no text")
        if self.options_form is not None:
            self.options_box.removeWidget(self.options_form)
            self.options_form.deleteLater()
        self.options_form = OptionsForm(spec)
        self.options_box.insertWidget(0, self.options_form)

    def models(self) -> list[str]:
        return self.model_list.specs()

    def add_model(self, spec: str) -> None:
        self.model_list.add(spec)

    def set_models(self, specs: list[str]) -> None:
        self.model_list.set_specs(specs)

    def choose_text(self) -> None:
        start = str(Path(self.text_edit.text()).parent) if self.text_edit.text() else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(
            self, "The text the experiment reads", start, "Text (*.txt);;All (*)"
        )
        if path:
            self.text_edit.setText(path)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Where runs write their folders", self.folder_edit.text()
        )
        if folder:
            self.folder_edit.setText(folder)

    # == running ===========================================================================================
    def argv(self, out: Path) -> list[str]:
        """The form as `memviz experiment NAME`'s arguments (after NAME)."""
        from memviz.backends.placement import preferred

        spec = self.spec()
        models = self.models()
        if not models:
            raise MemvizError("add a model to run the experiment on")
        args = [arg for model in models for arg in ("--model", model)]
        if spec.needs_text:
            text = self.text_edit.text().strip()
            if not text:
                raise MemvizError(f"{spec.name} reads a text: choose a text file")
            args += ["--text-file", text]
        device, dtype = preferred()  # the Model picker's choice, as the app's own loads
        args += ["--out", str(out), f"--seed={self.seed_spin.value()}", "--device", device, "--dtype", dtype]
        args += ["--theme", self.figure_theme.currentText(), f"--scale={self.png_scale.value():g}", "--quiet"]
        return args + (self.options_form.argv() if self.options_form is not None else [])

    def prepare(self) -> tuple[Experiment, argparse.Namespace]:
        """The chosen run as the command line's parser reads it, with its text; refused in one line."""
        from memviz.textio import read_text_file

        spec = self.spec()
        parent = Path(self.folder_edit.text().strip() or default_results_parent()).expanduser()
        out = new_results_folder(parent, spec.name)
        check_results_folder(out)
        args = experiment_parser(spec).parse_args(self.argv(out))
        args.experiment = spec.name
        args.text = None
        self.text_warnings: list[str] = []
        if args.text_file is not None:
            args.text, self.text_warnings = read_text_file(args.text_file)
        return spec, args

    def start(self) -> Job | None:
        """Run the chosen experiment on the job thread; None if the form is refused (one line)."""
        if self.job is not None and not self.job.ended:
            return None
        try:
            spec, args = self.prepare()
        except MemvizError as exc:
            self.say(first_line(str(exc)), error=True)
            return None
        self.settings.setValue(FOLDER_KEY, self.folder_edit.text().strip())
        if spec.needs_text:
            self.settings.setValue(TEXT_KEY, self.text_edit.text().strip())
        job = Job(lambda job: run_experiment(spec, args, job), label=f"experiment {spec.name}")
        job.progress.connect(self._on_progress)
        job.finished.connect(self._on_finished)
        job.failed.connect(self._on_failed)
        self.job, self._running_spec, self._running_args = job, spec, args
        self.progress_bar.show()
        self.progress_bar.setRange(0, 0)  # busy until the first report
        self.progress_bar.setFormat("starting")
        self.say(f"running {spec.name} on {', '.join(args.model)} ...")
        self._set_running(True)
        self.job_started.emit(job)
        self.jobs.submit(job)
        return job

    def cancel(self) -> None:
        if self.job is not None and not self.job.ended:
            self.job.cancel()
            self.say("cancelling after this batch ...")

    @property
    def running(self) -> bool:
        return self.job is not None and not self.job.ended

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running and bool(self.specs))
        self.cancel_button.setEnabled(running)
        self.open_button.setEnabled(not running)
        self.experiment_combo.setEnabled(not running)

    @Slot(int, int, str)
    def _on_progress(self, done: int, total: int, text: str) -> None:
        if total <= 0:  # a note: the bar stays, the line says it
            self.say(text)
            return
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(min(done, total))
        self.progress_bar.setFormat(f"{text}: {done:,}/{total:,}".replace("%", "%%"))

    @Slot(object)
    def _on_finished(self, outcome: RunOutcome) -> None:
        from memviz.export.experiment_figure import save_figures

        self._set_running(False)
        self.outcome = outcome
        args, spec = self._running_args, self._running_spec
        written = list(outcome.written)
        figure_error = ""
        if not args.no_figure:
            self.progress_bar.setFormat("drawing the figures")
            try:
                written += save_figures(
                    spec.figures(), outcome.result, outcome.folder, theme=args.theme, scale=args.scale
                )
            except Exception as exc:  # noqa: BLE001 - the results are written: say why the figure is not
                figure_error = f"; the figure files failed: {one_line(exc)}"
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self.progress_bar.setFormat("done")
        self.show_result(outcome.result, outcome.folder)
        notes = [*self.text_warnings, *outcome.notes]
        extra = f"; {len(notes)} note{'s' if len(notes) > 1 else ''} (hover to read)" if notes else ""
        self.say(
            f"wrote {len(written)} files to {outcome.folder}{figure_error}{extra}",
            error=bool(figure_error),
            details=notes,
        )
        self.finished.emit(outcome.folder)

    @Slot(str)
    def _on_failed(self, reason: str) -> None:
        self._set_running(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        cancelled = self.job is not None and self.job.cancelled
        self.progress_bar.setFormat("cancelled" if cancelled else "failed")
        line = "cancelled: nothing was written" if cancelled else first_line(reason)
        self.say(line, error=not cancelled)
        self.failed.emit(line)

    def say(self, text: str, error: bool = False, details: list[str] | None = None) -> None:
        """One line under Run; what it leaves out (the run's warnings) in its tooltip."""
        self.status_label.setText(first_line(text) if text else "")
        self.status_label.setToolTip("\n".join([text, *(details or [])]))
        self.status_label.setProperty("error", error)
        self.status_label.setStyleSheet("color: #e15759;" if error else "")

    # == results ===========================================================================================
    def show_result(self, result: ExperimentResult, folder: Path) -> ResultsView:
        if self.results_view is not None:
            self.results_layout.removeWidget(self.results_view)
            self.results_view.deleteLater()
        self.placeholder.hide()
        self.results_view = ResultsView(result, folder, self.state(), self.results_area)
        self.results_layout.addWidget(self.results_view)
        return self.results_view

    def open_results(self, folder: str | Path) -> ResultsView | None:
        """A saved experiment's folder shown again; a folder that is not one is refused in one line."""
        try:
            result = read_results(folder)
        except MemvizError as exc:
            self.say(first_line(str(exc)), error=True)
            return None
        view = self.show_result(result, Path(folder))
        self.say(f"opened {folder}")
        self.opened.emit(Path(folder))
        return view

    def open_results_dialog(self) -> None:
        start = self.folder_edit.text().strip() or str(default_results_parent())
        folder = QFileDialog.getExistingDirectory(self, "Open experiment results", start)
        if folder:
            self.open_results(folder)

    # == theme and closing =================================================================================
    def _on_view_changed(self, state: ViewState) -> None:
        if state.theme != self._theme:
            self._theme = state.theme
            self.apply_theme()

    def apply_theme(self) -> None:
        state = self.state()
        self.setStyleSheet(style_sheet(state.theme) + window_rules(state))
        if self.results_view is not None:
            self.results_view.apply_theme(state)

    def shutdown(self) -> None:
        """Cancel a run and wait for its thread (the app is closing)."""
        if self.job is not None and not self.job.ended:
            self.job.cancel()
            self.job.wait(30)
        self.jobs.stop()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.cancel()
        super().closeEvent(event)


__all__ = ["Cancelled", "ExperimentsWindow", "default_results_parent"]
