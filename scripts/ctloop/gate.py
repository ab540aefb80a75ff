"""Champion/challenger: a retrained model replaces the served one only if it is not worse.

Both models are scored on the same held-out rows, which neither of them trained on: the held-out
reference rows and the newest held-out production rows. The score is the mean of the accuracy on
each part (reference only while production has no held-out rows yet), so a challenger must keep
what the reference teaches while following production.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # keeps this module free of scikit-learn: the API imports RULE
    from ctloop.train import TrainingSet


@dataclass(frozen=True)
class GateSet:
    embeddings: np.ndarray
    targets: np.ndarray
    is_prod: np.ndarray

    @property
    def reference_rows(self) -> int:
        return int((~self.is_prod).sum())

    @property
    def production_rows(self) -> int:
        return int(self.is_prod.sum())


def gate_set(training_set: TrainingSet, recent_prod_rows: int) -> GateSet:
    """The held-out reference rows and the newest `recent_prod_rows` held-out production rows."""
    reference = np.flatnonzero(training_set.holdout & ~training_set.is_prod)
    production = np.flatnonzero(training_set.holdout & training_set.is_prod)[-recent_prod_rows:]
    rows = np.concatenate([reference, production])
    return GateSet(
        embeddings=training_set.embeddings[rows],
        targets=training_set.targets[rows],
        is_prod=training_set.is_prod[rows],
    )


def gate_score(predicted: np.ndarray, gate: GateSet) -> dict:
    """Accuracy on each part of the gate set and their mean."""
    correct = np.asarray(predicted) == gate.targets
    parts = {
        "reference_accuracy": _mean(correct[~gate.is_prod]),
        "production_accuracy": _mean(correct[gate.is_prod]),
    }
    available = [value for value in parts.values() if value is not None]
    return {**parts, "score": round(float(np.mean(available)), 6)}


def decide(
    champion: dict | None, challenger: dict, policy: str, tolerance: float
) -> tuple[str, str]:
    """('promoted' | 'rejected', why)."""
    if champion is None:
        return "promoted", "no comparable champion"
    if policy == "always":
        return "promoted", "PROMOTION_POLICY=always"
    if challenger["score"] >= champion["score"] - tolerance:
        return "promoted", f"{challenger['score']:.4f} >= {champion['score']:.4f} - {tolerance:g}"
    return "rejected", f"{challenger['score']:.4f} < {champion['score']:.4f} - {tolerance:g}"


RULE = (
    "promote when the challenger's gate score >= the champion's - GATE_TOLERANCE; gate score = "
    "mean of the accuracy on the held-out reference rows and on the newest GATE_RECENT_ROWS "
    "held-out production rows (reference only while there are none); neither model trained on them"
)


def _mean(values: np.ndarray) -> float | None:
    return round(float(values.mean()), 6) if len(values) else None
