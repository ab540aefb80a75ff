"""Drift on the embedding columns: shifted columns are flagged, unshifted ones are not.

Each embedding column gets a Kolmogorov-Smirnov test (the default DRIFT_TEST) and is
flagged when its p-value is below DRIFT_THRESHOLD (0.05).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from evidently.core.report import Snapshot
from evidently.ui.workspace import Workspace

from ctloop.config import CoreSettings
from ctloop.reference import read_reference
from ctloop.tables import embedding_columns
from harness.data import copy_reference, served_feedback, write_prod
from harness.reporting import reporting_settings
from reporting.project import update
from reporting.snapshots import column_drift_scores, metric_values

SHIFTED = ["PCA_3", "PCA_7", "PCA_20"]


def drift_of(settings, result) -> tuple[set[str], dict, dict[str, float]]:
    """(flagged embedding columns, DriftedColumnsCount value, every column's p-value)."""
    model = Workspace(str(settings.workspace_dir)).get_run(result.project_id, result.snapshot_id)
    snapshot = Snapshot.load_model(model)
    scores = column_drift_scores(snapshot)
    count = next(
        value for kind, _, value in metric_values(snapshot) if kind == "DriftedColumnsCount"
    )
    flagged = {
        column
        for column, p_value in scores.items()
        if column.startswith("PCA_") and p_value < settings.drift_threshold
    }
    return flagged, count, scores


def run(tmp_path: Path, built: CoreSettings, embeddings, targets, predictions):
    data_dir = tmp_path / "data"
    copy_reference(built, data_dir)
    settings = reporting_settings(data_dir)
    write_prod(settings.prod_data_path, embeddings, targets, predictions)
    return settings, update(settings)


def reference_sample(built: CoreSettings, rows: int, seed: int):
    """`rows` reference rows drawn without replacement: production that did not move."""
    reference = read_reference(built.ref_data_path)
    index = np.random.default_rng(seed).choice(len(reference), rows, replace=False)
    return reference.embeddings[index].copy(), reference.targets[index], reference.targets[index]


@pytest.mark.slow
def test_exactly_the_shifted_columns_are_flagged(tmp_path: Path, built: CoreSettings) -> None:
    embeddings, targets, predictions = reference_sample(built, 600, seed=11)
    columns = embedding_columns(embeddings.shape[1])
    for name in SHIFTED:
        column = columns.index(name)
        embeddings[:, column] += 0.5 * embeddings[:, column].std()

    settings, result = run(tmp_path, built, embeddings, targets, predictions)

    flagged, count, scores = drift_of(settings, result)
    assert flagged == set(SHIFTED)
    # Evidently's own count and share agree with the per-column results.
    assert count == {"count": 3, "share": pytest.approx(3 / 32)}
    assert result.values["drift_share"] == pytest.approx(3 / 32)
    assert set(scores) == {*columns, "target", "prediction"}


@pytest.mark.slow
def test_an_unshifted_sample_of_the_reference_flags_nothing(
    tmp_path: Path, built: CoreSettings
) -> None:
    settings, result = run(tmp_path, built, *reference_sample(built, 600, seed=12))

    flagged, count, _ = drift_of(settings, result)
    assert flagged == set()
    assert count == {"count": 0, "share": 0}


@pytest.mark.slow
def test_unseen_images_stay_within_the_false_positive_rate(
    tmp_path: Path, built: CoreSettings
) -> None:
    """Digits never in the reference, served by the model: an independent, undrifted sample.

    At p < 0.05 on 32 columns about 1.6 columns are flagged by chance; this allows up to 4
    (12.5 %), which 32 independent columns exceed with probability about 2 %.
    """
    settings, result = run(tmp_path, built, *served_feedback(built))

    flagged, count, scores = drift_of(settings, result)
    assert len(flagged) <= 4, flagged
    assert count["count"] == len(flagged)
    # The classes arrive in the reference's proportions: no label drift either.
    assert scores["target"] >= 0.05 and scores["prediction"] >= 0.05


@pytest.mark.slow
def test_a_change_of_class_balance_shows_as_target_and_prediction_drift(
    tmp_path: Path, built: CoreSettings
) -> None:
    embeddings, targets, predictions = served_feedback(built)
    keep = np.isin(targets, ["1", "7"])  # production sees two digits only

    settings, result = run(tmp_path, built, embeddings[keep], targets[keep], predictions[keep])

    _, _, scores = drift_of(settings, result)
    assert scores["target"] < 0.05 and scores["prediction"] < 0.05


@pytest.mark.slow
@pytest.mark.parametrize(
    ("test", "threshold", "shift"),
    [("ks", 0.05, 0.0), ("ks", 0.05, 0.5), ("ks", 0.05, 2.0), ("wasserstein", 0.1, 0.5)],
)
def test_the_drift_trigger_and_the_dashboard_agree(
    tmp_path: Path, built, test, threshold, shift
) -> None:
    """ctloop.drift (the trainer's drift trigger, no Evidently) gives the dashboard's share with
    either DRIFT_TEST: one declaration (stackconf.MonitoringSettings) configures both."""
    from ctloop.drift import drift_share

    embeddings, targets, predictions = reference_sample(built, 120, seed=5)
    embeddings[:, ::3] += shift  # a third of the columns move, by `shift`
    data_dir = tmp_path / "data"
    copy_reference(built, data_dir)
    settings = reporting_settings(data_dir, drift_test=test, drift_threshold=threshold)
    write_prod(settings.prod_data_path, embeddings, targets, predictions)
    result = update(settings)
    _, count, _ = drift_of(settings, result)
    reference = read_reference(settings.ref_data_path).embeddings
    share = drift_share(reference, embeddings, test, threshold)
    assert share == pytest.approx(count["share"], abs=1e-9)
    if shift == 0.5:
        assert 0 < share < 1  # some columns moved enough to count, some not: a real comparison
