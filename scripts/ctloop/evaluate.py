"""The one definition of every quality metric, used by manifests, the gate, the dashboard, the
exporter and the traffic simulator's reports.

scikit-learn's definitions, on class labels as strings:

- accuracy: the share of rows whose prediction equals the target;
- macro F1, macro precision, macro recall: the unweighted mean over the labels that occur in the
  target or in the prediction (scikit-learn's default label set), 0 where a ratio is undefined;
- balanced accuracy: the mean recall over the classes that occur in the target
  (`balanced_accuracy_score`), so a class absent from the rows is left out, not counted as 0;
- per-class recall: the recall of each class that occurs in the target.
"""

from __future__ import annotations

import warnings
from types import ModuleType

import numpy as np
from numpy.typing import ArrayLike

# The names under which manifests, the exporter and the dashboard store each figure.
METRICS = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "balanced_accuracy")


def _labels(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(y_true, dtype=str), np.asarray(y_pred, dtype=str)


def _sklearn() -> ModuleType:
    """scikit-learn's metrics, imported on first use: the serving workers import this package's
    gate (for its rule's text) and must not load scikit-learn."""
    from sklearn import metrics

    return metrics


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Share of rows predicted right (scikit-learn's accuracy_score, in numpy: the serving
    workers compute it live during a stage and do not load scikit-learn)."""
    truth, predicted = _labels(y_true, y_pred)
    if truth.shape != predicted.shape:
        raise ValueError(f"{len(truth)} true labels for {len(predicted)} predictions")
    return float(np.mean(truth == predicted))


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean F1 over the labels in the target or the prediction."""
    return float(_sklearn().f1_score(*_labels(y_true, y_pred), average="macro", zero_division=0))


def macro_precision(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean precision over the labels in the target or the prediction."""
    return float(
        _sklearn().precision_score(*_labels(y_true, y_pred), average="macro", zero_division=0)
    )


def macro_recall(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean recall over the labels in the target or the prediction."""
    return float(
        _sklearn().recall_score(*_labels(y_true, y_pred), average="macro", zero_division=0)
    )


def balanced_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean recall over the classes present in the target."""
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected here
        warnings.simplefilter("ignore", UserWarning)
        return float(_sklearn().balanced_accuracy_score(*_labels(y_true, y_pred)))


def per_class_recall(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """Recall of each class present in the target, in sorted order."""
    truth, predicted = _labels(y_true, y_pred)
    present = sorted(set(truth.tolist()))
    recalls = _sklearn().recall_score(
        truth, predicted, labels=present, average=None, zero_division=0
    )
    return {label: float(value) for label, value in zip(present, recalls, strict=True)}


SCORERS = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "macro_precision": macro_precision,
    "macro_recall": macro_recall,
    "balanced_accuracy": balanced_accuracy,
}


def classification_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict:
    """Every metric above on these rows, rounded to 6 digits (what a manifest stores)."""
    truth, predicted = _labels(y_true, y_pred)
    if len(truth) == 0:
        return {"rows": 0}
    return {
        "rows": len(truth),
        **{name: round(score(truth, predicted), 6) for name, score in SCORERS.items()},
        "per_class_recall": {
            label: round(value, 6) for label, value in per_class_recall(truth, predicted).items()
        },
    }


def expected_calibration_error(
    probabilities: np.ndarray, y_true: np.ndarray, classes: list[str], bins: int = 10
) -> float:
    """ECE: the rows binned by confidence (equal-width bins over [0, 1]); the mean over bins,
    weighted by their share of rows, of |accuracy - mean confidence| (Guo et al. 2017)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(probabilities) == 0:
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = np.asarray(classes)[probabilities.argmax(axis=1)] == np.asarray(y_true, dtype=str)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return round(float(gap), 6)
