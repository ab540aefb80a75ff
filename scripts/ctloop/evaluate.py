"""Quality metrics of a classifier on labelled rows (scikit-learn's definitions)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, recall_score


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro F1, balanced accuracy and per-class recall, rounded for the manifest."""
    y_true = np.asarray(y_true, dtype=str)
    y_pred = np.asarray(y_pred, dtype=str)
    if len(y_true) == 0:
        return {"rows": 0}
    present = [label for label in classes if label in set(y_true)]
    recalls = recall_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    return {
        "rows": len(y_true),
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 6),
        "macro_f1": round(
            float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)), 6
        ),
        # scikit-learn's balanced_accuracy_score: the mean recall over the classes present.
        "balanced_accuracy": round(float(recalls.mean()), 6),
        "per_class_recall": {
            label: round(float(r), 6) for label, r in zip(present, recalls, strict=True)
        },
    }
