"""Qt views of a Trace, one module per panel; used by the app (memviz.ui) and by export.

The list of panels is in memviz.panels.registry, so importing one panel never imports them all.
"""
