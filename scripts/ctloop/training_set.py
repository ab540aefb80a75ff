"""The rows a head trains and is measured on, and the held-out rules: which reference and which
production rows no version ever trains on. Light on purpose (no scikit-learn at import): the
augmentation, the gate and the retrain set all use these types."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrainingSet:
    """Embedding rows with their class, where they come from, and whether they are held out."""

    embeddings: np.ndarray
    targets: np.ndarray
    is_prod: np.ndarray
    holdout: np.ndarray
    weights: np.ndarray
    augmented: np.ndarray | None = None  # rows made by ctloop.augment (in memory only)

    def augmented_mask(self) -> np.ndarray:
        if self.augmented is None:
            return np.zeros(len(self.targets), dtype=bool)
        return self.augmented

    @property
    def prod_rows(self) -> int:
        return int(self.is_prod.sum())

    def fingerprint(self) -> str:
        """sha256 of the rows, their classes, weights and held-out flags."""
        digest = hashlib.sha256()
        for array in (self.embeddings, self.targets.astype("U"), self.weights, self.holdout):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


def row_weights(is_prod: np.ndarray, prod_weight: float) -> np.ndarray:
    """Production rows count `prod_weight` times as much as reference rows.

    Scaled so that the largest weight is 1: an SVC's sample weight multiplies C, and on data it
    fits without error no bound is active, so raising weights changes nothing; lowering the
    reference rows' weight (their C) is what lets production rows move the boundary.
    """
    weights = np.where(is_prod, prod_weight, 1.0)
    return weights / max(prod_weight, 1.0)


def reference_holdout_mask(targets: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The seeded, stratified share of reference rows that no model version trains on."""
    from sklearn.model_selection import train_test_split  # only where a split is made

    indices = np.arange(len(targets))
    _, held = train_test_split(indices, test_size=fraction, stratify=targets, random_state=seed)
    mask = np.zeros(len(targets), dtype=bool)
    mask[held] = True
    return mask


def production_holdout_mask(row_numbers: np.ndarray, every: int) -> np.ndarray:
    """Every `every`-th production row (by its 1-based number in prod_data.csv) is held out."""
    return (np.asarray(row_numbers) % every) == 0
