"""Windowed and per-version figures, and their Prometheus exporter over real HTTP."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evidently import DataDefinition, Dataset, Report
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from ctloop.config import CoreSettings
from ctloop.prod_data import ProductionData
from ctloop.reference import read_reference
from ctloop.tables import embedding_columns
from harness import loopback
from harness.data import copy_reference, served_feedback, write_prod
from harness.processes import free_port
from harness.reporting import reporting_settings
from reporting.drift import embedding_drift_preset
from reporting.exporter import SnapshotCollector, serve_metrics
from reporting.project import UpdateResult, update
from reporting.refresher import Refresher
from reporting.snapshots import headline_values, quiet_numerics

W = 60


@pytest.fixture
def two_versions(tmp_path: Path, built: CoreSettings):
    """150 rows answered by v0001, then 40 by v0002 with every third prediction wrong."""
    data_dir = tmp_path / "data"
    copy_reference(built, data_dir)
    embeddings, targets, predictions = served_feedback(built)
    order = np.random.default_rng(0).permutation(len(targets))[:190]
    embeddings, targets, predictions = embeddings[order], targets[order], predictions[order].copy()
    wrong = np.arange(150, 190)[::3]
    predictions[wrong] = np.where(targets[wrong] == "0", "1", "0")
    settings = reporting_settings(data_dir, window_rows=W)
    write_prod(settings.prod_data_path, embeddings[:150], targets[:150], predictions[:150])
    write_prod(settings.prod_data_path, embeddings[150:], targets[150:], predictions[150:], "v0002")
    return settings


def scores(target: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "accuracy": accuracy_score(target, prediction),
            "macro_f1": f1_score(target, prediction, average="macro", zero_division=0),
            "balanced_accuracy": balanced_accuracy_score(target, prediction),
        }


@pytest.mark.slow
def test_window_figures_are_those_of_the_latest_rows_overall_and_per_version(
    two_versions,
) -> None:
    settings = two_versions
    result = update(settings)
    window = result.window
    assert result.outcome == "snapshot" and window is not None

    reference = read_reference(settings.ref_data_path)
    n_components = reference.embeddings.shape[1]
    table = ProductionData(settings.prod_data_path, n_components).read_rows()
    target, prediction = table.columns["target"], table.columns["prediction"]
    version = table.columns["model_version"]
    assert window.rows == W
    expected = scores(target[-W:], prediction[-W:])
    for measure, value in expected.items():
        assert window.quality[measure] == pytest.approx(value, abs=1e-9), measure
    # The window holds the last 20 rows of v0001 and the 40 of v0002; nothing older.
    assert window.version_rows == {"v0001": 20, "v0002": 40}
    for name in ("v0001", "v0002"):
        mine = version[-W:] == name
        for measure, value in scores(target[-W:][mine], prediction[-W:][mine]).items():
            assert window.version_quality[name][measure] == pytest.approx(value, abs=1e-9)
    assert window.version_quality["v0002"]["accuracy"] < window.version_quality["v0001"]["accuracy"]

    # The drift share of the window (ctloop.drift's) is Evidently's preset on those rows.
    columns = embedding_columns(n_components)
    drift = embedding_drift(
        pd.DataFrame(reference.embeddings, columns=columns),
        pd.DataFrame(table.embeddings[-W:], columns=columns),
        columns,
        settings,
    )
    assert window.drift_share == pytest.approx(drift["drift_share"])
    assert window.drifted_columns == drift["drifted_columns"]


def embedding_drift(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], settings):
    """{"drift_share", "drifted_columns"} of Evidently's DataDriftPreset, as the dashboard runs
    it on every production row, here on `current`."""
    definition = DataDefinition(numerical_columns=columns)
    with quiet_numerics():
        snapshot = Report([embedding_drift_preset(settings, columns)]).run(
            Dataset.from_pandas(current[columns], data_definition=definition),
            Dataset.from_pandas(reference[columns], data_definition=definition),
        )
    values = headline_values(snapshot)
    return {key: values[key] for key in ("drift_share", "drifted_columns")}


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = loopback.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.slow
def test_the_exporter_serves_the_snapshot_and_the_refresher_health(two_versions) -> None:
    settings = two_versions
    collector = SnapshotCollector(settings.window_rows)
    port = free_port()
    server, _ = serve_metrics(collector, "127.0.0.1", port)
    try:
        before = scrape(port)
        assert ("ctloop_window_size_rows", ()) in before
        assert not any(name == "ctloop_window_drift_share" for name, _ in before)

        refresher = Refresher(settings, listener=collector)
        result = refresher.tick()
        assert isinstance(result, UpdateResult) and result.window is not None
        metrics = scrape(port)
        window = result.window
        assert metrics[("ctloop_window_drift_share", ())] == pytest.approx(window.drift_share)
        assert metrics[("ctloop_drift_share", ())] == pytest.approx(result.values["drift_share"])
        assert metrics[("ctloop_window_rows", ())] == W
        assert metrics[("ctloop_window_size_rows", ())] == W
        for measure, value in window.quality.items():
            assert metrics[("ctloop_window_quality", (("measure", measure),))] == pytest.approx(
                value
            )
        key = ("ctloop_window_version_quality", (("measure", "accuracy"), ("version", "v0002")))
        assert metrics[key] == pytest.approx(window.version_quality["v0002"]["accuracy"])
        assert metrics[("ctloop_window_version_rows", (("version", "v0001"),))] == 20
        versions = {dict(labels).get("version") for name, labels in metrics if "version" in name}
        assert versions == {"v0001", "v0002"}, "per-version series only for the window's versions"
        assert metrics[("ctloop_reporting_last_update_ok", ())] == 1
        assert metrics[("ctloop_reporting_snapshot_rows", ())] == 190
        assert metrics[("ctloop_reporting_updates_total", (("outcome", "snapshot"),))] == 1
        assert 0 <= metrics[("ctloop_reporting_snapshot_age_seconds", ())] < 60
        first_success = metrics[("ctloop_reporting_last_success_timestamp_seconds", ())]

        # Nothing changed: a check, no new snapshot, still a success.
        assert refresher.tick() is None
        again = scrape(port)
        assert again[("ctloop_reporting_last_success_timestamp_seconds", ())] >= first_success
        assert again[("ctloop_reporting_updates_total", (("outcome", "snapshot"),))] == 1

        # A corrupt reference: the update fails, the previous figures stay, the failure shows.
        settings.ref_data_path.write_text("PCA_1,target\nnot-a-number,3\n")
        assert refresher.tick() is None
        failed = scrape(port)
        assert failed[("ctloop_reporting_last_update_ok", ())] == 0
        assert failed[("ctloop_reporting_updates_total", (("outcome", "failed"),))] == 1
        assert failed[("ctloop_reporting_last_failure_timestamp_seconds", ())] >= first_success
        assert failed[("ctloop_window_drift_share", ())] == pytest.approx(window.drift_share)
    finally:
        server.shutdown()
        server.server_close()
