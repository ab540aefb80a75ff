"""A real `evidently ui` on loopback, and the service that runs it next to the refresher."""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from ctloop.config import CoreSettings
from harness import loopback
from harness.data import copy_reference, prod_labels, served_feedback, write_prod
from harness.processes import free_port, is_alive, json_logs, running, ui_pids, wait_for
from harness.reporting import api, reporting_settings

STARTUP_SECONDS = 60  # `evidently ui` answers in 3-5 s here; a loaded CI machine gets slack


def project_snapshots(port: int, name: str) -> tuple[str, list[dict]]:
    """(project id, its snapshots) as the UI's HTTP API lists them."""
    matching = [project for project in api(port, "/api/projects") if project["name"] == name]
    assert len(matching) == 1, matching
    project_id = matching[0]["id"]
    return project_id, api(port, f"/api/projects/{project_id}/snapshots")


def series(
    port: int, project_id: str, metric: str, labels: dict[str, str] | None = None
) -> list[float]:
    """One metric's values over the snapshots, as the dashboard's plots request them."""
    response = loopback.post(
        f"http://127.0.0.1:{port}/api/v2/snapshots/{project_id}/data_series_batch",
        json={
            "series_filter": [
                {
                    "metric": f"evidently:metric_v2:{metric}",
                    "metric_labels": labels or {},
                    "tags": [],
                    "metadata": {},
                }
            ]
        },
        timeout=5,
    )
    response.raise_for_status()
    (found,) = response.json()["series"]
    return found["values"]


def service(tmp_path: Path, built: CoreSettings, rows: int):
    """Data for the service and the environment it reads its settings from."""
    data_dir = tmp_path / "data"
    copy_reference(built, data_dir)
    embeddings, targets, predictions = served_feedback(built)
    write_prod(data_dir / "prod_data.csv", embeddings[:rows], targets[:rows], predictions[:rows])
    port = free_port()
    environment = {
        "DATA_DIR": str(data_dir),
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "REPORTING_HOST": "127.0.0.1",
        "REPORTING_PORT": str(port),
        "REPORTING_METRICS_PORT": str(free_port()),
        "REPORTING_REFRESH_SECONDS": "1",
        "MONITORING_MIN_ROWS": "30",
        "REPORTING_KEEP_SNAPSHOTS": "1",  # older ones keep their figures only
    }
    return data_dir, port, environment, (embeddings, targets, predictions)


def expected_series(prod_data: Path, n: int, rows: int, window_rows: int) -> dict[str, float]:
    """What the dashboard's plots should read for a snapshot of the first `rows` rows."""
    target, prediction = (column[:rows] for column in prod_labels(prod_data, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        balanced = balanced_accuracy_score(target, prediction)
    window = slice(-window_rows, None)
    return {
        "BalancedAccuracy": balanced,
        "WindowQuality": float(np.mean(target[window] == prediction[window])),
    }


@pytest.mark.slow
def test_the_service_follows_production_and_stops_cleanly(
    tmp_path: Path, built: CoreSettings
) -> None:
    """reporting.serve: the UI lists the refresher's snapshots as they are written (no restart),
    with the dashboard's panels and the figures its plots read; the exporter serves them; writes
    need the secret; SIGTERM stops both processes."""
    data_dir, port, environment, feedback = service(tmp_path, built, rows=50)
    log_path = tmp_path / "serve.log"
    settings = reporting_settings(data_dir)
    name, window_rows = settings.project, settings.window_rows

    with running([sys.executable, "-m", "reporting.serve"], log_path, **environment) as process:
        wait_for(lambda: api(port, "/api/version"), STARTUP_SECONDS, what="the UI")
        listed = wait_for(lambda: project_snapshots(port, name)[1], 60, what="a snapshot")
        project_id, (first,) = project_snapshots(port, name)[0], listed
        assert first["name"] == "50 feedback rows"
        assert len(api(port, f"/api/v2/dashboards/{project_id}")["panels"]) == 18

        embeddings, targets, predictions = feedback
        write_prod(
            data_dir / "prod_data.csv", embeddings[50:80], targets[50:80], predictions[50:80]
        )

        def grown() -> list[dict]:
            snapshots = project_snapshots(port, name)[1]
            return snapshots if any(s["name"] == "80 feedback rows" for s in snapshots) else []

        listed = wait_for(grown, 60, what="a snapshot of the grown file")
        assert first["id"] in {snapshot["id"] for snapshot in listed}
        assert (data_dir / "reports" / "latest.html").exists()
        # The figures the dashboard's plots read, first and last snapshot.
        rows = series(port, project_id, "RowCount")
        assert rows[0] == 50 and rows[-1] == 80 and rows == sorted(rows), rows
        assert series(port, project_id, "FeedbackRows") == rows
        # The first snapshot left the newest one kept whole: its report is gone, not its figures.
        newest = next(s for s in listed if s["name"] == "80 feedback rows")
        report = api(port, f"/api/projects/{project_id}/{newest['id']}/data")
        assert report["widgets"]
        thinned = f"/api/projects/{project_id}/{first['id']}/data"
        wait_for(lambda: not api(port, thinned)["widgets"], 30, what="the first one thinned")
        window = {"window_rows": str(window_rows)}
        plotted = {
            "BalancedAccuracy": series(port, project_id, "BalancedAccuracy"),
            "WindowQuality": series(
                port, project_id, "WindowQuality", {"measure": "accuracy", **window}
            ),
        }
        for end, index in ((50, 0), (80, -1)):
            expected = expected_series(
                data_dir / "prod_data.csv", embeddings.shape[1], end, window_rows
            )
            for metric, values in plotted.items():
                assert values[index] == pytest.approx(expected[metric], abs=1e-6), metric
        served_rows = series(
            port, project_id, "VersionWindowRows", {"model_version": "v0001", **window}
        )
        assert served_rows[0] == 50 and served_rows[-1] == min(80, window_rows), served_rows
        # The exporter serves the snapshot's figures to Prometheus on its own port.
        metrics_url = f"http://127.0.0.1:{environment['REPORTING_METRICS_PORT']}/metrics"
        exported = wait_for(
            lambda: "ctloop_window_rows 80.0" in loopback.get(metrics_url, timeout=5).text,
            30,
            what="the 80-row window on /metrics",
        )
        assert exported

        # Reading needs nothing; writing through the UI's API needs the generated secret.
        url = f"http://127.0.0.1:{port}/api/projects/{project_id}"
        assert loopback.delete(url).status_code == 403
        assert loopback.delete(url, headers={"evidently-secret": "guess"}).status_code == 403
        secret = (tmp_path / "secrets" / "evidently_secret").read_text().strip()
        assert len(secret) >= 40
        assert project_snapshots(port, name)[1], "the history is still there"

        (ui_pid,) = ui_pids(log_path)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not is_alive(ui_pid)

    records = json_logs(log_path)
    messages = [record["message"] for record in records]
    assert "refreshed" in messages and "stop requested" in messages
    assert all({"time", "level", "message"} <= record.keys() for record in records)


@pytest.mark.slow
def test_the_service_exits_non_zero_when_the_ui_dies(tmp_path: Path, built: CoreSettings) -> None:
    _, port, environment, _ = service(tmp_path, built, rows=0)
    log_path = tmp_path / "serve.log"

    with running([sys.executable, "-m", "reporting.serve"], log_path, **environment) as process:
        wait_for(lambda: api(port, "/api/version"), STARTUP_SECONDS, what="the UI")
        (ui_pid,) = ui_pids(log_path)
        started = time.monotonic()
        os.kill(ui_pid, signal.SIGKILL)

        assert process.wait(timeout=30) != 0
        assert time.monotonic() - started < 20  # noticed within a few polls
    assert "evidently ui exited; stopping" in [record["message"] for record in json_logs(log_path)]
