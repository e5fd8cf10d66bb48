"""What the LSTM panels compute over a whole long run, against numpy over the whole array: the state
panel's colour level (the max over steps of each step's 98th percentile of |x|, found without
partitioning every step: max_row_percentile, exactly numpy's number) and the sort by a unit's
variance over steps 0..t (PrefixMoments: block sums, so a redraw reads at most one block)."""

from __future__ import annotations

import numpy as np
import pytest

from memviz.panels.lstm_state import max_row_percentile
from memviz.panels.prefix_moments import BLOCK, PrefixMoments


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


def test_prefix_variance_equals_numpy_at_every_kind_of_length():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((5 * BLOCK + 77, 9)) * 0.3 + 40).astype(np.float32)  # far from 0
    x[:, 4] = 0.5  # a constant unit: variance 0, never negative
    reads = []

    def read(lo, hi):
        reads.append(hi - lo)
        return x[lo:hi]

    moments = PrefixMoments(read)
    for n in (1, 2, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK, 17, len(x), 2 * BLOCK + 5):
        reads.clear()
        got = moments.variance(n)
        want = x[:n].astype(np.float64).var(axis=0)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        assert got[4] == 0.0
        assert max(reads, default=0) <= BLOCK  # a block at a time, never the whole run
    # the sort the panel makes from it is numpy's
    n = len(x)
    assert np.array_equal(
        np.argsort(-moments.variance(n), kind="stable"),
        np.argsort(-x.astype(np.float64).var(axis=0), kind="stable"),
    )
