"""Train the classifier head (scaler + classifier) on embedding rows and export it to ONNX.

Rows come from ref_data.csv, plus prod_data.csv for a retrain. A fixed part of them is never
trained on by any version (the held-out set): a seeded, stratified share of the reference rows and
every `prod_holdout_every`-th production row. Metrics are measured there, on the ONNX graph that
will be served.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.pipeline import Pipeline

from ctloop.augment import Augmentation, augment_training_set
from ctloop.evaluate import classification_metrics
from ctloop.head import (
    CLASSIFIER_FILE,
    DEFAULT_HEAD,
    HeadConfig,
    export_head,
    finetune_head,
    fit_head,
)
from ctloop.predict import Classifier
from ctloop.training_set import TrainingSet

PARITY_TOLERANCE = 1e-4


class ExportMismatchError(RuntimeError):
    """The ONNX graph does not reproduce the scikit-learn model."""


@dataclass(frozen=True)
class TrainedHead:
    model: bytes  # classifier.onnx
    classes: list[str]
    metrics: dict
    training: dict
    extra_files: dict[str, bytes] = field(default_factory=dict)  # head.json for an MLP head

    @property
    def files(self) -> dict[str, bytes]:
        """The head's files for a registry version (classifier.onnx, head.json)."""
        return {CLASSIFIER_FILE: self.model, **self.extra_files}


def train_head(
    training_set: TrainingSet,
    config: HeadConfig | None = None,
    base_files: dict[str, bytes] | None = None,
    augmentation: Augmentation | None = None,
    checkpoint: Callable[[], None] | None = None,
) -> TrainedHead:
    """Fit on the rows not held out, export to ONNX, check parity, measure on the held-out rows.

    With `base_files` (a registry version's files) the base's head is fine-tuned on those rows
    (`finetune_head`); without, a new head is fitted from scratch (`fit_head`). With
    `augmentation`, transformed copies of the rows not held out are trained on too
    (`ctloop.augment.augment_training_set`); held-out rows and metrics stay real rows only.
    `checkpoint` (a fit from scratch only) is called between its long steps and may raise.
    """
    config = config or DEFAULT_HEAD
    started = time.perf_counter()
    if augmentation is not None:
        training_set = augment_training_set(
            training_set,
            augmentation.embedding_model,
            augmentation.config,
            augmentation.seed,
            augmentation.spec,
        )
    augment_seconds = time.perf_counter() - started
    fit_rows = ~training_set.holdout
    rows = (
        training_set.embeddings[fit_rows],
        training_set.targets[fit_rows],
        training_set.weights[fit_rows],
    )
    started = time.perf_counter()
    if base_files is None:
        head = fit_head(*rows, config=config, checkpoint=checkpoint)
    else:
        head = finetune_head(base_files, *rows, config=config)
    fit_seconds = time.perf_counter() - started
    files = export_head(head)
    model = files.pop(CLASSIFIER_FILE)
    classes = [str(label) for label in head.classes_]
    classifier = Classifier(model, classes)
    held = training_set.embeddings[training_set.holdout]
    if len(held):
        labels, probabilities = classifier(held)
        check_parity(head, held, labels, probabilities)
    else:  # nothing held out (a caller's own set): no metrics; the gate still scores the head
        labels, probabilities = np.array([], dtype=str), np.empty((0, len(classes)), np.float32)
    truth = training_set.targets[training_set.holdout]
    held_prod = training_set.is_prod[training_set.holdout]
    metrics = {
        "holdout": classification_metrics(truth, labels),
        "holdout_reference": classification_metrics(truth[~held_prod], labels[~held_prod]),
        "holdout_production": classification_metrics(truth[held_prod], labels[held_prod]),
    }
    augmented = training_set.augmented_mask()
    training = {
        "rows": int(fit_rows.sum()),
        "reference_rows": int((fit_rows & ~training_set.is_prod & ~augmented).sum()),
        "production_rows": int((fit_rows & training_set.is_prod & ~augmented).sum()),
        "augmented_rows": int(augmented.sum()),
        "holdout_rows": int(training_set.holdout.sum()),
        "production_rows_read": int((training_set.is_prod & ~augmented).sum()),
        "production_weight": _relative_weight(training_set),
        "data_sha256": training_set.fingerprint(),
        "estimator": config.describe(),
        "head": config.to_dict(),
        "warm_start": base_files is not None,
        "augmentation": None if augmentation is None else augmentation.config.to_dict(),
        "augment_seconds": round(augment_seconds, 3),
        "fit_seconds": round(fit_seconds, 3),
    }
    return TrainedHead(
        model=model, classes=classes, metrics=metrics, training=training, extra_files=files
    )


def _relative_weight(training_set: TrainingSet) -> float | None:
    """How much a production row counts against a reference row in this training set."""
    if not training_set.prod_rows:
        return None
    weights = training_set.weights
    return round(float(weights[training_set.is_prod][0] / weights[~training_set.is_prod][0]), 6)


def check_parity(
    head: Pipeline, embeddings: np.ndarray, labels: np.ndarray, probabilities: np.ndarray
) -> None:
    """Refuse an export whose probabilities, or the labels read from them, differ from sklearn's.

    A label may differ only where scikit-learn's two best classes are tied within the tolerance.
    """
    if len(embeddings) == 0:
        return
    expected = head.predict_proba(embeddings)
    gap = float(np.abs(probabilities - expected).max())
    if gap > PARITY_TOLERANCE:
        raise ExportMismatchError(f"ONNX probabilities differ from scikit-learn's by {gap:.2e}")
    top_two = np.sort(expected, axis=1)[:, -2:]
    decided = (top_two[:, 1] - top_two[:, 0]) > PARITY_TOLERANCE
    if not np.array_equal(labels[decided], head.classes_[expected.argmax(axis=1)][decided]):
        raise ExportMismatchError("ONNX labels differ from scikit-learn's on the held-out rows")


def library_versions() -> dict:
    """Versions of everything that shapes a model's bytes or its predictions."""
    from importlib.metadata import version

    names = ["numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "pillow", "scipy"]
    return {"python": platform.python_version(), **{name: version(name) for name in names}}
