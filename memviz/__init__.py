"""memviz: see how a language model remembers."""

__version__ = "0.1.0"
