"""The state panel's colour level: the max over steps of each step's 98th percentile of |x|, found
without partitioning every step (max_row_percentile), must be numpy's own number, exactly."""

from __future__ import annotations

import numpy as np
import pytest

from memviz.panels.lstm_state import max_row_percentile


@pytest.mark.parametrize("kind", ["normal", "heavy tails", "ties", "one wild row", "constant"])
def test_equals_numpy_percentile_of_every_row(kind):
    rng = np.random.default_rng(7)
    for _ in range(40):
        rows, width = int(rng.integers(1, 3000)), int(rng.integers(1, 300))
        x = rng.standard_normal((rows, width)).astype(np.float32)
        if kind == "heavy tails":
            x = rng.standard_cauchy((rows, width)).astype(np.float32)
        elif kind == "ties":
            x = np.round(x, 1)
        elif kind == "one wild row":  # between the sampled rows: only the bound's check finds it
            x[rng.integers(rows)] *= 50
        elif kind == "constant":
            x[:] = 0.25
        a = np.abs(x)
        assert max_row_percentile(a, 98) == float(np.percentile(a, 98, axis=-1).max())


def test_no_steps():
    assert max_row_percentile(np.zeros((0, 8), np.float32), 98) == 0.0
