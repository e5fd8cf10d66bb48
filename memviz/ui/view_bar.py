"""The View toolbar: what tints the tokens, and the layer, head and unit the panels show; while two
runs are compared, which of them the panels show (A, B or B - A: ViewState.compare).

It edits the ViewModel and follows it; `configure(trace)` fits its ranges and choices to a trace
(heads only for attention models, units only for recurrent ones).
"""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QComboBox, QLabel, QSpinBox, QToolBar, QWidget

from memviz.core.trace import Trace
from memviz.core.view import COMPARE_MODES, ViewState
from memviz.panels.view_model import ViewModel
from memviz.ui.token_signals import SIGNALS, available_signals
from memviz.ui.transport import fit_combo

COMPARE_CHOICES = {"b": "B (this run)", "a": "A (compared with)", "diff": "B \u2212 A"}


class ViewBar(QToolBar):
    def __init__(self, view: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__("View", parent)
        self.setObjectName("viewToolBar")
        self.view = view
        self.spin_actions: dict[str, tuple[QAction, QAction]] = {}
        self.addWidget(QLabel(" Tint "))
        self.signal_combo = QComboBox()
        self.signal_combo.setToolTip("What tints the tokens")
        self.signal_combo.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.signal_combo.currentIndexChanged.connect(self._on_signal_combo)
        self.addWidget(self.signal_combo)
        self.layer_spin = self._spin("Layer", "layer", "The layer shown by the panels and the strip")
        self.head_spin = self._spin("Head", "head", "The attention head (GPT-2)")
        self.unit_spin = self._spin(
            "Unit", "unit", "The selected unit (LSTM): tints the tokens, highlighted in panels"
        )
        self.compare_label = self.addWidget(QLabel("  Show "))
        self.compare_combo = QComboBox()
        self.compare_combo.setObjectName("compareCombo")
        self.compare_combo.setToolTip(
            "Two runs compared: the panels show B (the run on screen), A (the run compared with) or "
            "B \u2212 A (Ctrl+Alt+B / A / D)"
        )
        for mode in COMPARE_MODES:
            self.compare_combo.addItem(COMPARE_CHOICES[mode], mode)
        self.compare_combo.currentIndexChanged.connect(self._on_compare_combo)
        self.compare_action = self.addWidget(self.compare_combo)
        self.show_compare(False)

    def _spin(self, label: str, field: str, tip: str) -> QSpinBox:
        label_action = self.addWidget(QLabel(f"  {label} "))
        spin = QSpinBox()
        spin.setObjectName(f"{field}Spin")
        spin.setToolTip(tip)
        spin.setRange(0, 0)
        spin.valueChanged.connect(lambda value: self.view.update(**{field: int(value)}))
        spin_action = self.addWidget(spin)
        self.spin_actions[field] = (label_action, spin_action)
        return spin

    def configure(self, trace: Trace | None) -> None:
        """Fit the ranges and the tint choices to a trace (and the view state to them)."""
        model = trace.model if trace is not None else {}
        arch = trace.architecture if trace is not None else ""
        layers = max(int(model.get("num_layers") or 1), 1)
        heads = max(int(model.get("num_heads") or 1), 1)
        units = max(int(model.get("hidden_size") or 1), 1)
        state = self.view.state
        changes = {
            "layer": min(state.layer, layers - 1),
            "head": min(state.head, heads - 1),
            "unit": min(state.unit, units - 1),
        }
        signals = available_signals(trace)
        if trace is not None and len(signals) > 1 and state.signal not in signals:
            changes["signal"] = (
                "attention" if "attention" in signals else "unit" if "unit" in signals else signals[1]
            )
        self.view.update(**changes)
        for spin, top in ((self.layer_spin, layers), (self.head_spin, heads), (self.unit_spin, units)):
            blocked = spin.blockSignals(True)
            spin.setRange(0, top - 1)
            spin.blockSignals(blocked)
        for action in self.spin_actions["head"]:
            action.setVisible(trace is not None and trace.kind == "transformer")
        for action in self.spin_actions["unit"]:
            action.setVisible(arch == "lstm")
        blocked = self.signal_combo.blockSignals(True)
        self.signal_combo.clear()
        for name in signals:
            self.signal_combo.addItem(SIGNALS[name][0], name)
        self.signal_combo.blockSignals(blocked)
        fit_combo(self.signal_combo)
        self.sync(self.view.state)

    def sync(self, state: ViewState) -> None:
        """Show the view state without editing it back."""
        for spin, value in (
            (self.layer_spin, state.layer),
            (self.head_spin, state.head),
            (self.unit_spin, state.unit),
        ):
            if spin.value() != value:
                blocked = spin.blockSignals(True)
                spin.setValue(value)
                spin.blockSignals(blocked)
        index = self.compare_combo.findData(state.compare)
        if index >= 0 and index != self.compare_combo.currentIndex():
            blocked = self.compare_combo.blockSignals(True)
            self.compare_combo.setCurrentIndex(index)
            self.compare_combo.blockSignals(blocked)
        index = self.signal_combo.findData(state.signal)
        if index >= 0 and index != self.signal_combo.currentIndex():
            blocked = self.signal_combo.blockSignals(True)
            self.signal_combo.setCurrentIndex(index)
            self.signal_combo.blockSignals(blocked)

    def _on_signal_combo(self, index: int) -> None:
        name = self.signal_combo.itemData(index)
        if name:
            self.view.update(signal=str(name))

    def show_compare(self, active: bool, same_model: bool = True) -> None:
        """The A / B / B - A choice, shown while two runs are compared (B - A: of one model only, else
        every panel shows a placeholder; it stays offered, the placeholders say why)."""
        for action in (self.compare_label, self.compare_action):
            action.setVisible(active)
        tip = "" if same_model else " (two models: B \u2212 A of their states is not defined)"
        self.compare_combo.setItemData(2, f"B's numbers minus A's{tip}", 3)  # Qt.ToolTipRole
        fit_combo(self.compare_combo)

    def _on_compare_combo(self, index: int) -> None:
        mode = self.compare_combo.itemData(index)
        if mode:
            self.view.update(compare=str(mode))
