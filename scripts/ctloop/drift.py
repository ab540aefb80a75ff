"""Drift of production embeddings against the reference, for the drift trigger.

The dashboard's test (DRIFT_TEST, DRIFT_THRESHOLD), computed without Evidently, as Evidently
computes it for each embedding column:

- "ks": scipy's two-sample Kolmogorov-Smirnov test; a column drifted when its p-value is at most
  the threshold;
- "wasserstein": scipy's first Wasserstein distance divided by the reference column's standard
  deviation (at least 0.001); a column drifted when it is at least the threshold.

The drift share is the share of drifted columns. A test checks that both give Evidently's
`DriftedColumnsCount` share on the same rows, so the trigger and the dashboard always agree.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

DriftTest = Literal["ks", "wasserstein"]


def drifted_columns(
    reference: np.ndarray, current: np.ndarray, test: DriftTest, threshold: float
) -> np.ndarray:
    """A boolean per embedding column: its distribution in `current` differs from `reference`."""
    from scipy import stats  # the trainer's import, never the serving workers'

    if reference.shape[1] != current.shape[1]:
        raise ValueError(f"{reference.shape[1]} reference columns, {current.shape[1]} current")
    if len(current) == 0:
        return np.zeros(reference.shape[1], dtype=bool)
    if test == "ks":
        return np.asarray(stats.ks_2samp(reference, current, axis=0).pvalue) <= threshold
    if test == "wasserstein":
        norms = np.maximum(np.std(reference, axis=0), 0.001)
        distances = [
            stats.wasserstein_distance(reference[:, column], current[:, column])
            for column in range(reference.shape[1])
        ]
        return np.asarray(distances) / norms >= threshold
    raise ValueError(f"unknown drift test {test!r}: 'ks' or 'wasserstein'")


def drift_share(
    reference: np.ndarray, current: np.ndarray, test: DriftTest = "ks", threshold: float = 0.05
) -> float:
    """Share of embedding columns that drifted (0 to 1)."""
    return float(drifted_columns(reference, current, test, threshold).mean())
