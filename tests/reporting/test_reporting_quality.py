"""The snapshot's quality figures are scikit-learn's, on the same feedback rows, in every case.

The quality figures read only the target and prediction columns, so these snapshots carry the
first COLUMNS embedding columns of the real reference and feedback rows: the per-column drift
figures, tested in test_reporting_drift.py, are most of a snapshot's cost."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from evidently.core.report import Snapshot
from evidently.ui.workspace import Workspace
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
)

from ctloop.config import CoreSettings
from ctloop.evaluate import classification_metrics
from ctloop.reference import read_reference, ref_csv_bytes
from ctloop.util import write_atomic
from harness.data import prod_labels, served_feedback, write_prod
from harness.reporting import reporting_settings
from reporting.project import update
from reporting.snapshots import metric_values

SKLEARN = {
    "MacroF1": lambda t, p: f1_score(t, p, average="macro"),
    "MacroPrecision": lambda t, p: precision_score(t, p, average="macro"),
    "MacroRecall": lambda t, p: recall_score(t, p, average="macro"),
    "BalancedAccuracy": balanced_accuracy_score,
    "AccuracyScore": accuracy_score,
}


def snapshot_scores(settings, result) -> dict[str, float]:
    """The quality values stored in the workspace for this update's snapshot."""
    model = Workspace(str(settings.workspace_dir)).get_run(result.project_id, result.snapshot_id)
    return {
        kind: value
        for kind, _, value in metric_values(Snapshot.load_model(model))
        if kind in SKLEARN
    }


def sklearn_scores(target: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined precision of never-predicted classes -> 0
        return {kind: float(score(target, prediction)) for kind, score in SKLEARN.items()}


def corrupt(predictions: np.ndarray, share: float, choices: list[str], seed: int) -> np.ndarray:
    """Replace a seeded share of the served labels by wrong ones from `choices`."""
    rng = np.random.default_rng(seed)
    result = predictions.copy()
    for index in rng.choice(len(result), int(share * len(result)), replace=False):
        result[index] = rng.choice([c for c in choices if c != result[index]])
    return result


COLUMNS = 4
Served = tuple[np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def served(built: CoreSettings) -> Served:
    """(embeddings, true labels, served labels) of the unseen images, first COLUMNS columns."""
    embeddings, targets, predictions = served_feedback(built)
    return embeddings[:, :COLUMNS], targets, predictions


def narrow_reference(built: CoreSettings, data_dir: Path) -> None:
    """data_dir/ref_data.csv: the built reference's rows, first COLUMNS columns."""
    table = read_reference(built.ref_data_path)
    csv = ref_csv_bytes(table.embeddings[:, :COLUMNS], table.targets.tolist())
    write_atomic(data_dir / "ref_data.csv", csv)


def feedback_case(served: Served, case: str) -> Served:
    """(embeddings, targets, predictions) of one production situation."""
    embeddings, targets, predictions = served
    digits = [str(d) for d in range(10)]
    if case == "all classes":
        return embeddings, targets, corrupt(predictions, 0.2, digits, seed=1)
    if case == "classes missing from production":
        keep = np.isin(targets, ["0", "1", "2", "3", "4", "5"])
        # Wrong answers include classes that never occur as a target here.
        return embeddings[keep], targets[keep], corrupt(predictions[keep], 0.25, digits, seed=2)
    if case == "two classes":
        # Evidently's own scores turn binary (pos_label=1) on two labels: they fail on strings.
        keep = np.isin(targets, ["3", "8"])
        return embeddings[keep], targets[keep], corrupt(predictions[keep], 0.2, ["3", "8"], 3)
    if case == "one class":
        keep = targets == "7"
        return embeddings[keep], targets[keep], corrupt(predictions[keep], 0.3, ["7", "1"], 4)
    raise ValueError(case)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", ["all classes", "classes missing from production", "two classes", "one class"]
)
def test_snapshot_scores_equal_sklearn_macro_values(
    tmp_path: Path, built: CoreSettings, served: Served, case: str
) -> None:
    data_dir = tmp_path / "data"
    narrow_reference(built, data_dir)
    embeddings, targets, predictions = feedback_case(served, case)
    assert len(targets) >= 30
    settings = reporting_settings(data_dir, min_rows=30)
    write_prod(settings.prod_data_path, embeddings, targets, predictions)

    result = update(settings)

    assert result.outcome == "snapshot"
    stored = snapshot_scores(settings, result)
    expected = sklearn_scores(*prod_labels(settings.prod_data_path, embeddings.shape[1]))
    assert stored.keys() == expected.keys()
    for kind, value in expected.items():
        assert stored[kind] == pytest.approx(value, abs=1e-6), kind
    assert result.values["balanced_accuracy"] == pytest.approx(expected["BalancedAccuracy"])


# The dashboard's metric -> the key under which a manifest stores the same figure.
MANIFEST_KEYS = {
    "MacroF1": "macro_f1",
    "MacroPrecision": "macro_precision",
    "MacroRecall": "macro_recall",
    "BalancedAccuracy": "balanced_accuracy",
    "AccuracyScore": "accuracy",
}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["all classes", "classes missing from production"])
def test_dashboard_and_manifest_agree_on_the_same_rows(
    tmp_path: Path, built: CoreSettings, served: Served, case: str
) -> None:
    """One definition: a manifest's held-out figures and the dashboard's, on the same rows."""
    data_dir = tmp_path / "data"
    narrow_reference(built, data_dir)
    embeddings, targets, predictions = feedback_case(served, case)
    settings = reporting_settings(data_dir, min_rows=30)
    write_prod(settings.prod_data_path, embeddings, targets, predictions)

    stored = snapshot_scores(settings, update(settings))

    # What train_head writes into a manifest for these (truth, prediction) rows.
    manifest = classification_metrics(*prod_labels(settings.prod_data_path, embeddings.shape[1]))
    assert stored.keys() == MANIFEST_KEYS.keys()
    for kind, key in MANIFEST_KEYS.items():
        assert stored[kind] == pytest.approx(manifest[key], abs=1e-6), kind


@pytest.mark.slow
def test_balanced_accuracy_leaves_out_classes_absent_from_production(
    tmp_path: Path, built: CoreSettings, served: Served
) -> None:
    data_dir = tmp_path / "data"
    narrow_reference(built, data_dir)
    embeddings, targets, predictions = feedback_case(served, "classes missing from production")
    settings = reporting_settings(data_dir, min_rows=30)
    write_prod(settings.prod_data_path, embeddings, targets, predictions)

    stored = snapshot_scores(settings, update(settings))

    target, prediction = prod_labels(settings.prod_data_path, embeddings.shape[1])
    present = sorted(set(target))
    recalls = [np.mean(prediction[target == label] == label) for label in present]
    # An oracle independent of scikit-learn: the mean recall over the classes that occur.
    assert stored["BalancedAccuracy"] == pytest.approx(np.mean(recalls), abs=1e-9)
    # ... which is not macro recall here, since wrong answers name classes never seen as targets.
    assert abs(stored["BalancedAccuracy"] - stored["MacroRecall"]) > 0.01
    dashboard = Workspace(str(settings.workspace_dir)).get_dashboard(
        Workspace(str(settings.workspace_dir)).search_project(settings.project)[0].id
    )
    status = next(panel for panel in dashboard.panels if panel.title == "Status").subtitle
    assert "Classes absent from the feedback" in status and "6, 7, 8, 9" in status


@pytest.mark.slow
def test_class_names_stay_strings(tmp_path: Path) -> None:
    """Labels that pandas would read as numbers ("01", "1", "1.0") stay three distinct classes."""
    rng = np.random.default_rng(7)
    classes = ["01", "1", "1.0", "cat"]
    ref_labels = [classes[i % 4] for i in range(400)]
    data_dir = tmp_path / "data"
    write_atomic(
        data_dir / "ref_data.csv",
        ref_csv_bytes(rng.normal(size=(400, 8)).astype(np.float32), ref_labels),
    )
    targets = np.array([classes[i % 4] for i in range(120)])
    predictions = np.where(rng.random(120) < 0.3, np.roll(targets, 1), targets)
    settings = reporting_settings(data_dir, min_rows=30)
    write_prod(settings.prod_data_path, rng.normal(size=(120, 8)), targets, predictions)

    result = update(settings)

    stored = snapshot_scores(settings, result)
    expected = sklearn_scores(*prod_labels(settings.prod_data_path, 8))
    for kind, value in expected.items():
        assert stored[kind] == pytest.approx(value, abs=1e-6), kind
    # Merging "1" and "1.0" (or "01") would make these differ.
    assert expected["AccuracyScore"] == pytest.approx(np.mean(targets == predictions))
