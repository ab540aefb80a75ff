"""A real `evidently ui` on loopback, and the service that runs it next to the refresher."""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from ctloop.config import CoreSettings
from harness.data import copy_reference, prod_labels, served_feedback, write_prod
from harness.processes import free_port, is_alive, json_logs, running, ui_pids, wait_for
from harness.reporting import api, reporting_settings
from reporting.project import update
from reporting.serve import ui_command

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
    response = httpx.post(
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


@pytest.mark.slow
def test_the_ui_lists_the_project_and_shows_new_snapshots_without_restart(
    tmp_path: Path, built: CoreSettings
) -> None:
    data_dir = tmp_path / "data"
    copy_reference(built, data_dir)
    embeddings, targets, predictions = served_feedback(built)
    settings = reporting_settings(data_dir, host="127.0.0.1", port=free_port())
    write_prod(settings.prod_data_path, embeddings[:200], targets[:200], predictions[:200])
    first = update(settings)

    with running(ui_command(settings), tmp_path / "ui.log"):
        wait_for(lambda: api(settings.port, "/api/version"), STARTUP_SECONDS, what="the UI")
        project_id, listed = project_snapshots(settings.port, settings.project)
        assert [snapshot["id"] for snapshot in listed] == [str(first.snapshot_id)]
        dashboard = api(settings.port, f"/api/v2/dashboards/{project_id}")
        assert len(dashboard["panels"]) == 18
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = balanced_accuracy_score(
                *prod_labels(settings.prod_data_path, embeddings.shape[1])
            )
        assert series(settings.port, project_id, "BalancedAccuracy") == [
            pytest.approx(expected, abs=1e-6)
        ]
        # The windowed view, with the labels the dashboard's panels filter on.
        target, prediction = prod_labels(settings.prod_data_path, embeddings.shape[1])
        window = {"window_rows": str(settings.window_rows)}
        assert series(
            settings.port, project_id, "WindowQuality", {"measure": "accuracy", **window}
        ) == [pytest.approx(float(np.mean(target[-100:] == prediction[-100:])), abs=1e-6)]
        assert series(
            settings.port,
            project_id,
            "VersionWindowRows",
            {"model_version": "v0001", **window},
        ) == [100]

        # Feedback arrives while the UI runs; the update writes a new snapshot file.
        write_prod(settings.prod_data_path, embeddings[200:], targets[200:], predictions[200:])
        second = update(settings)

        def two_snapshots() -> list[dict]:
            found = project_snapshots(settings.port, settings.project)[1]
            return found if len(found) == 2 else []

        listed = wait_for(two_snapshots, 30, what="the new snapshot in the UI")
        assert {snapshot["id"] for snapshot in listed} == {
            str(first.snapshot_id),
            str(second.snapshot_id),
        }
        rows = series(settings.port, project_id, "RowCount")
        assert rows == [200, len(targets)]


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
    }
    return data_dir, port, environment, (embeddings, targets, predictions)


@pytest.mark.slow
def test_the_service_follows_production_and_stops_cleanly(
    tmp_path: Path, built: CoreSettings
) -> None:
    data_dir, port, environment, feedback = service(tmp_path, built, rows=50)
    log_path = tmp_path / "serve.log"
    name = "ctloop: production monitoring"

    with running([sys.executable, "-m", "reporting.serve"], log_path, **environment) as process:
        wait_for(lambda: api(port, "/api/version"), STARTUP_SECONDS, what="the UI")
        wait_for(lambda: project_snapshots(port, name)[1], 60, what="the first snapshot")

        embeddings, targets, predictions = feedback
        write_prod(
            data_dir / "prod_data.csv", embeddings[50:80], targets[50:80], predictions[50:80]
        )

        def grown() -> list[dict]:
            snapshots = project_snapshots(port, name)[1]
            return snapshots if any(s["name"] == "80 feedback rows" for s in snapshots) else []

        wait_for(grown, 60, what="a snapshot of the grown file")
        assert (data_dir / "reports" / "latest.html").exists()
        # The exporter serves the snapshot's figures to Prometheus on its own port.
        metrics_url = f"http://127.0.0.1:{environment['REPORTING_METRICS_PORT']}/metrics"
        exported = wait_for(
            lambda: "ctloop_window_rows 80.0" in httpx.get(metrics_url, timeout=5).text,
            30,
            what="the 80-row window on /metrics",
        )
        assert exported

        # Reading needs nothing; writing through the UI's API needs the generated secret.
        project = project_snapshots(port, name)[0]
        url = f"http://127.0.0.1:{port}/api/projects/{project}"
        assert httpx.delete(url).status_code == 403
        assert httpx.delete(url, headers={"evidently-secret": "guess"}).status_code == 403
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
