"""The experiments `memviz experiment NAME` runs: NAME -> its module, which defines EXPERIMENT.

A module is imported only when the command line is built or the experiment runs, and must stay
light at import (torch, transformers and Qt inside its functions): the parser lists every
experiment at each start of `memviz`. A module not written yet is left out of the list.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from memviz.errors import MemvizError
from memviz.experiments.result import ExperimentResult

# name -> module path; each module defines EXPERIMENT (an Experiment)
MODULES: dict[str, str] = {
    "copy": "memviz.experiments.copy",
    "context": "memviz.experiments.context",
    "timescales": "memviz.experiments.timescales",
    "knn": "memviz.experiments.knn",
}


@dataclass(frozen=True)
class Experiment:
    name: str
    help: str  # one line for `memviz experiment --help`
    run: Callable[[list, argparse.Namespace], ExperimentResult]  # run(backends, args)
    # "module:Class" of the figure (a memviz.export.experiment_figure.ExperimentFigure subclass);
    # named, not imported: the export layer sits above this one
    figure: str
    add_options: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    # more figures: file stem -> "module:Class" (copy's induction heatmap); "figure" is the main one
    more_figures: dict[str, str] = field(default_factory=dict)
    needs_text: bool = False  # --text-file is required

    def figures(self) -> dict[str, str]:
        return {"figure": self.figure, **self.more_figures}


def _load(name: str) -> Experiment | None:
    module_path = MODULES[name]
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        if exc.name == module_path:  # not written yet: not offered
            return None
        raise
    return getattr(module, "EXPERIMENT", None)  # None: a module still being written


def experiments() -> dict[str, Experiment]:
    """Every experiment whose module exists, by name, in MODULES' order."""
    found = {}
    for name in MODULES:
        experiment = _load(name)
        if experiment is not None:
            found[name] = experiment
    return found


def experiment(name: str) -> Experiment:
    found = _load(name) if name in MODULES else None
    if found is None:
        raise MemvizError(f"no experiment {name!r}; experiments: {', '.join(experiments())}")
    return found
