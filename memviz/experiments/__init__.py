"""Memory-span experiments (issue 18): measurements of how far back a model remembers.

Qt-free: an experiment runs backends and returns an ExperimentResult (result.py); the export layer
draws its figure (memviz.export.experiment_figure) and `memviz experiment` (experiment_cli) drives it.
Experiment modules import torch inside their functions: the command line lists them at every start.
"""
