"""Drift of production embeddings against the reference, for the drift trigger.

The dashboard's test, computed without Evidently: a two-sample Kolmogorov-Smirnov test per
embedding column (scipy's `ks_2samp`, which Evidently's "ks" test calls), a column drifted when
its p-value is at most the threshold, the share of drifted columns. A test checks that this gives
Evidently's `DriftedColumnsCount` share on the same rows.
"""

from __future__ import annotations

import numpy as np


def drifted_columns(reference: np.ndarray, current: np.ndarray, threshold: float) -> np.ndarray:
    """A boolean per embedding column: its distribution in `current` differs from `reference`."""
    from scipy.stats import ks_2samp  # the trainer's import, never the serving workers'

    if reference.shape[1] != current.shape[1]:
        raise ValueError(f"{reference.shape[1]} reference columns, {current.shape[1]} current")
    if len(current) == 0:
        return np.zeros(reference.shape[1], dtype=bool)
    p_values = ks_2samp(reference, current, axis=0).pvalue
    return np.asarray(p_values) <= threshold


def drift_share(reference: np.ndarray, current: np.ndarray, threshold: float = 0.05) -> float:
    """Share of embedding columns that drifted (0 to 1)."""
    return float(drifted_columns(reference, current, threshold).mean())
