"""An experiment's options as form fields, read from its argparse options, and back to a command line.

The Experiments window builds the same parser `memviz experiment NAME` builds (the common options,
then the experiment's `add_options`), shows one field per option of the experiment's own, and turns
the fields into the arguments that command line would have: the parser then reads them, so the
window's run has exactly the CLI's settings, defaults and checks. A field left at its default is
not passed at all (the parser's own default applies, as when the option is left out on the
command line).
"""

from __future__ import annotations

import argparse

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from memviz.errors import MemvizError
from memviz.experiments.registry import Experiment

PATH_METAVARS = {"STORE", "FILE", "F", "PATH", "DIR", "FOLDER"}  # these options get a Choose... button
# the common options the window sets itself (models, text, folder) or never shows (quiet)
HANDLED = {"help", "model", "text_file", "out", "quiet", "theme", "scale", "no_figure", "device", "dtype"}


class ParserError(MemvizError):
    """What argparse would have printed before exiting with status 2."""


class RaisingParser(argparse.ArgumentParser):
    """An ArgumentParser that raises a one-line error instead of printing usage and exiting."""

    def error(self, message: str):  # noqa: D401 - argparse's name
        raise ParserError(message)

    def exit(self, status: int = 0, message: str | None = None):
        raise ParserError((message or f"exit {status}").strip())


def experiment_parser(spec: Experiment) -> RaisingParser:
    """The parser `memviz experiment NAME` builds for `spec`: common options, then its own."""
    from memviz.export.experiment_cli import add_common_options

    parser = RaisingParser(prog=f"memviz experiment {spec.name}", add_help=False)
    add_common_options(parser, text_required=spec.needs_text)
    spec.add_options(parser)
    return parser


def experiment_options(spec: Experiment) -> list[argparse.Action]:
    """The experiment's own options (what `add_options` adds), in order: the form's fields."""
    common = RaisingParser(add_help=False)
    from memviz.export.experiment_cli import add_common_options

    add_common_options(common)
    common_dests = {a.dest for a in common._actions}
    return [a for a in experiment_parser(spec)._actions if a.dest not in common_dests | HANDLED]


def default_text(action: argparse.Action) -> str:
    """The default as the option's text on a command line ('' for none)."""
    value = action.default
    if value is None or value is argparse.SUPPRESS:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(_number_text(v) for v in value)
    return _number_text(value)


def _number_text(value) -> str:
    if isinstance(value, float):
        short = f"{value:g}"  # 0.9, not 0.90000000000000002; 20000, not 20000.0
        return short if float(short) == value else repr(value)
    return str(value)


def option_label(action: argparse.Action) -> str:
    """'--max-tokens' -> 'max tokens'."""
    name = action.option_strings[-1] if action.option_strings else action.dest
    return name.lstrip("-").replace("-", " ").replace("_", " ")


class OptionField:
    """One option's widget and what it adds to the command line."""

    def __init__(self, action: argparse.Action) -> None:
        self.action = action
        self.flag = action.option_strings[-1]
        self.is_switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        self.repeats = isinstance(action, argparse._AppendAction)
        self.widget: QWidget
        if self.is_switch:
            box = QCheckBox()
            box.setChecked(bool(action.default))
            self.widget = box
        elif action.choices:
            combo = QComboBox()
            for choice in action.choices:
                combo.addItem(str(choice), choice)
            combo.setCurrentIndex(max(0, combo.findData(action.default)))
            self.widget = combo
        else:
            edit = QLineEdit(default_text(action))
            edit.setCursorPosition(0)  # a long default list shows its start
            edit.setPlaceholderText(action.metavar if isinstance(action.metavar, str) else "default")
            if self.repeats:
                edit.setPlaceholderText("one per model, separated by ';'")
            self.widget = edit
        self.widget.setObjectName(f"option_{action.dest}")
        self.widget.setToolTip(action.help or "")
        self.row: QWidget = self.widget  # what the form shows: the field, with Choose... for a path
        if isinstance(self.widget, QLineEdit) and action.metavar in PATH_METAVARS:
            self.row = QWidget()
            box = QHBoxLayout(self.row)
            box.setContentsMargins(0, 0, 0, 0)
            box.addWidget(self.widget, 1)
            button = QPushButton("Choose...")
            button.clicked.connect(self.choose_path)
            box.addWidget(button)

    def choose_path(self) -> None:
        """A file for the option (added to the list for an option given once per model)."""
        edit = self.widget
        path, _ = QFileDialog.getOpenFileName(edit, f"{self.flag} {self.action.metavar}", "")
        if not path:
            return
        if self.repeats and edit.text().strip():
            edit.setText(f"{edit.text().strip()}; {path}")
        else:
            edit.setText(path)

    def text(self) -> str:
        w = self.widget
        if isinstance(w, QCheckBox):
            return "1" if w.isChecked() else ""
        if isinstance(w, QComboBox):
            return str(w.currentData())
        return w.text().strip()

    def set_text(self, text: str) -> None:
        w = self.widget
        if isinstance(w, QCheckBox):
            w.setChecked(bool(text))
        elif isinstance(w, QComboBox):
            w.setCurrentIndex(max(0, w.findText(text)))
        else:
            w.setText(text)

    def argv(self) -> list[str]:
        """This option's arguments: none when it is at its default (the parser's default applies)."""
        a = self.action
        if self.is_switch:
            checked = self.text() == "1"
            on = isinstance(a, argparse._StoreTrueAction)
            return [self.flag] if checked == on and checked != bool(a.default) else []
        text = self.text()
        if self.repeats:
            return [arg for value in text.split(";") if value.strip() for arg in (self.flag, value.strip())]
        if isinstance(self.widget, QComboBox):
            return [] if self.widget.currentData() == a.default else [self.flag, text]
        if text == default_text(a):
            return []
        if text == "":
            raise ParserError(f"{self.flag}: give a value (it has no default)")
        return [f"{self.flag}={text}"]  # '=': a value may start with '-'


class OptionsForm(QWidget):
    """The experiment's own options as a form; `argv()` gives them as the command line's arguments."""

    changed = Signal()

    def __init__(self, spec: Experiment, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("experimentOptions")
        self.setAttribute(
            Qt.WidgetAttribute.WA_StyledBackground, True
        )  # the theme's, not the viewport's white
        self.spec = spec
        self.fields: dict[str, OptionField] = {}
        layout = QFormLayout(self)
        layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for action in experiment_options(spec):
            field = OptionField(action)
            self.fields[action.dest] = field
            label = QLabel(option_label(action))
            label.setToolTip(action.help or "")
            layout.addRow(label, field.row)
            hint = QLabel(action.help or "")
            hint.setObjectName("optionHelp")
            hint.setWordWrap(True)
            layout.addRow("", hint)
        if not self.fields:
            layout.addRow(QLabel("(this experiment has no options of its own)"))

    def argv(self) -> list[str]:
        return [arg for field in self.fields.values() for arg in field.argv()]

    def set_values(self, values: dict[str, str]) -> None:
        """dest -> text, as a user would type it (tests, restoring a form)."""
        for dest, text in values.items():
            self.fields[dest].set_text(text)
