"""kNN-LM mixing (Khandelwal et al., 2020): p = lambda * p_kNN + (1 - lambda) * p_LM.

p_kNN(y) is proportional to the sum, over retrieved neighbours whose stored next token is y,
of exp(-distance / temperature), with distance the squared L2 distance between keys.
"""

from __future__ import annotations

import numpy as np


def knn_distribution(
    values: np.ndarray, distances: np.ndarray, vocab_size: int, temperature: float
) -> np.ndarray:
    """p_kNN over the vocabulary from neighbours' next tokens and squared-L2 distances."""
    p = np.zeros(vocab_size, dtype=np.float64)
    valid = values >= 0
    if not valid.any():
        return p
    d = np.asarray(distances, dtype=np.float64)[valid]
    logits = -d / max(temperature, 1e-12)
    weights = np.exp(logits - logits.max())  # stable: the shift cancels in the normalisation
    np.add.at(p, np.asarray(values)[valid], weights)
    return p / p.sum()


def mix(p_lm: np.ndarray, p_knn: np.ndarray, lam: float) -> np.ndarray:
    """lambda = 0 returns p_lm itself, unchanged; with no neighbours p_kNN is all zero and p_lm is kept."""
    if lam == 0 or not p_knn.any():
        return p_lm
    return lam * p_knn + (1.0 - lam) * p_lm
