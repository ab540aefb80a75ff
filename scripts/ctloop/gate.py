"""Champion/challenger: a retrained model replaces the served one only if it is not worse.

Both models are scored on the same held-out rows, which neither of them trained on: the held-out
reference rows and the newest held-out production rows. The score is the mean of the accuracy on
each part (reference only while production has no held-out rows yet), so a challenger must keep
what the reference teaches while following production.

Whoever sends feedback also writes the held-out production rows, so the score alone can be
steered: 285 images of a 3 labelled 8 made a challenger that reads 3s as 8s score higher. The
held-out reference rows are the part nobody outside can touch, so a challenger is also rejected
when its recall of any class on them falls more than GATE_CLASS_TOLERANCE below the champion's,
or below the class floor: the first model's recall on the same rows, carried from manifest to
manifest. The floor stops a slow attack that loses a little at each retrain, each step within
the tolerance of the last champion.

The mean score lets a challenger trade the one for the other: a fine-tune that wins a few
drifted production rows may lose a clean digit, and a chain of such trades drifts away from
what the reference teaches. So a challenger is also rejected when its accuracy on the held-out
reference rows falls more than GATE_REFERENCE_TOLERANCE below the champion's, or below the
reference floor: the first model's, carried like the class floor (docs/studies/retraining.md
measures what this costs in adaptation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ctloop.evaluate import per_class_recall

if TYPE_CHECKING:  # keeps this module free of scikit-learn: the API imports RULE
    from ctloop.training_set import TrainingSet


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
    """Accuracy on each part of the gate set and their mean, and the recall of each class on the
    held-out reference rows."""
    predicted = np.asarray(predicted)
    correct = predicted == gate.targets
    parts = {
        "reference_accuracy": _mean(correct[~gate.is_prod]),
        "production_accuracy": _mean(correct[gate.is_prod]),
    }
    available = [value for value in parts.values() if value is not None]
    reference = ~gate.is_prod
    recall = per_class_recall(gate.targets[reference], predicted[reference])
    return {
        **parts,
        "score": round(float(np.mean(available)), 6),
        "reference_class_recall": {label: round(value, 6) for label, value in recall.items()},
    }


def decide(
    champion: dict | None,
    challenger: dict,
    policy: str,
    tolerance: float,
    class_tolerance: float = 1.0,
    class_floor: dict[str, float] | None = None,
    reference_tolerance: float = 1.0,
    reference_floor: float | None = None,
) -> tuple[str, str]:
    """('promoted' | 'rejected', why)."""
    if champion is None:
        return "promoted", "no comparable champion"
    if policy == "always":
        return "promoted", "PROMOTION_POLICY=always"
    lost = class_losses(champion, challenger, class_tolerance, class_floor)
    if lost:
        return "rejected", "recall on the held-out reference rows fell for class " + ", ".join(
            f"{label} ({was:.3f} -> {now:.3f})" for label, was, now in lost
        ) + f": more than GATE_CLASS_TOLERANCE={class_tolerance:g}"
    keep = max(champion.get("reference_accuracy") or 0.0, reference_floor or 0.0)
    now = challenger.get("reference_accuracy") or 0.0
    if now < keep - reference_tolerance - 1e-9:
        return "rejected", (
            f"accuracy on the held-out reference rows fell ({keep:.4f} -> {now:.4f}): more than "
            f"GATE_REFERENCE_TOLERANCE={reference_tolerance:g}"
        )
    if challenger["score"] >= champion["score"] - tolerance:
        return "promoted", f"{challenger['score']:.4f} >= {champion['score']:.4f} - {tolerance:g}"
    return "rejected", f"{challenger['score']:.4f} < {champion['score']:.4f} - {tolerance:g}"


def class_losses(
    champion: dict, challenger: dict, tolerance: float, floor: dict[str, float] | None = None
) -> list[tuple[str, float, float]]:
    """(class, recall to keep, challenger's) for each class whose recall on the held-out
    reference rows the challenger lost more than `tolerance` of: against the champion's, or
    against the floor when that is higher."""
    champion_recall = champion.get("reference_class_recall") or {}
    floor = floor or {}
    after = challenger.get("reference_class_recall") or {}
    lost = []
    for label in sorted(set(champion_recall) | set(floor)):
        keep = max(champion_recall.get(label, 0.0), floor.get(label, 0.0))
        if after.get(label, 0.0) < keep - tolerance - 1e-9:
            lost.append((label, keep, after.get(label, 0.0)))
    return lost


RULE = (
    "promote when the challenger's gate score >= the champion's - GATE_TOLERANCE and, on the "
    "held-out reference rows, no class's recall falls more than GATE_CLASS_TOLERANCE below the "
    "champion's and the accuracy no more than GATE_REFERENCE_TOLERANCE below the champion's or "
    "the first model's; gate score = mean of the accuracy on the held-out reference rows and "
    "on the newest GATE_RECENT_ROWS held-out production rows (reference only while there are "
    "none); neither model trained on them"
)


def _mean(values: np.ndarray) -> float | None:
    return round(float(values.mean()), 6) if len(values) else None
