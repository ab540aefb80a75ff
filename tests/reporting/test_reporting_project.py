"""reporting/project.py: idempotent runs, bad or missing data, bounded reads, retention, the
refresher."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from evidently.core.report import Snapshot
from evidently.ui.workspace import Workspace

from ctloop.config import CoreSettings
from ctloop.prod_data import ProductionRow
from ctloop.prod_db import PostgresProductionData
from ctloop.tables import TableError, format_row, prod_header
from harness.data import REPO, copy_reference, served_feedback, write_prod
from harness.processes import child_environment
from harness.reporting import reporting_settings
from reporting.project import update
from reporting.refresher import Refresher
from reporting.retention import Retention, plan, snapshot_seconds
from reporting.settings import ReportingSettings
from reporting.snapshots import metric_values


def projects(settings: ReportingSettings) -> list:
    return Workspace(str(settings.workspace_dir)).list_projects()


def snapshots(settings: ReportingSettings) -> list:
    workspace = Workspace(str(settings.workspace_dir))
    (project,) = workspace.list_projects()
    return [
        Snapshot.load_model(workspace.get_run(project.id, run))
        for run in sorted(workspace.list_runs(project.id))
    ]


def status(settings: ReportingSettings) -> str:
    workspace = Workspace(str(settings.workspace_dir))
    (project,) = workspace.list_projects()
    panels = workspace.get_dashboard(project.id).panels
    return next(panel.subtitle for panel in panels if panel.title == "Status")


@pytest.fixture
def feedback(built: CoreSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return served_feedback(built)


@pytest.fixture
def data_dir(tmp_path: Path, built: CoreSettings) -> Path:
    copy_reference(built, tmp_path / "data")
    return tmp_path / "data"


@pytest.mark.slow
def test_two_runs_give_one_project_one_set_of_panels_two_snapshots(
    data_dir: Path, feedback
) -> None:
    settings = reporting_settings(data_dir)
    write_prod(settings.prod_data_path, *feedback)

    first = update(settings)
    dashboard_file = next(settings.workspace_dir.glob("*/dashboard.json"))
    panels_after_first = json.loads(dashboard_file.read_text())["panels"]
    second = update(settings)

    assert first.project_id == second.project_id
    assert len(projects(settings)) == 1
    panels = json.loads(dashboard_file.read_text())["panels"]
    assert [p["id"] for p in panels] == [p["id"] for p in panels_after_first]
    assert len(panels) == len({p["id"] for p in panels}) == 18
    titles = {p["title"] for p in panels}
    assert {"Feedback rows", "F1 (macro)", "Balanced accuracy", "Recall (macro)"} <= titles
    assert {"Precision (macro)", "Share of drifted embedding columns"} <= titles
    first_snapshot, second_snapshot = snapshots(settings)
    # The same metrics with the same configuration in both, so the dashboard has one series each.
    assert [(k, c) for k, c, _ in metric_values(first_snapshot)] == [
        (k, c) for k, c, _ in metric_values(second_snapshot)
    ]
    reports = sorted(settings.reports_path.glob("report-*.html"))
    assert [first.html_report, second.html_report] == reports
    latest = (settings.reports_path / "latest.html").read_text()
    assert latest == second.html_report.read_text()
    assert "Balanced accuracy" in latest and "Drifted Columns" in latest


@pytest.mark.parametrize("prod", ["missing", "empty", "header only", "5 rows"])
def test_too_little_feedback_waits_without_crashing(data_dir: Path, feedback, prod: str) -> None:
    settings = reporting_settings(data_dir, min_rows=30)
    if prod == "empty":
        settings.prod_data_path.write_bytes(b"")
    elif prod == "header only":
        settings.prod_data_path.write_bytes(format_row(prod_header(32)))
    elif prod == "5 rows":
        write_prod(settings.prod_data_path, *(column[:5] for column in feedback))

    result = update(settings)

    rows = 5 if prod == "5 rows" else 0
    assert result.outcome == "waiting"
    assert result.values == {"feedback_rows": rows, "snapshot_rows": rows}
    (snapshot,) = snapshots(settings)
    assert [(kind, value) for kind, _, value in metric_values(snapshot)] == [
        ("FeedbackRows", rows),
        ("RowCount", rows),
    ]
    assert status(settings).startswith(f"Waiting for feedback: {rows} of the 30 production rows")
    assert result.html_report.exists()


def test_without_reference_there_is_a_project_but_no_snapshot(tmp_path: Path) -> None:
    settings = reporting_settings(tmp_path / "data")

    result = update(settings)

    assert result.outcome == "no-reference"
    assert len(projects(settings)) == 1
    assert snapshots(settings) == []
    assert "Waiting for the reference data" in status(settings)


@pytest.mark.slow
@pytest.mark.parametrize("command", [["reporting/project.py"], ["-m", "reporting.project"]])
def test_runs_as_a_script(data_dir: Path, feedback, command: list[str]) -> None:
    settings = reporting_settings(data_dir)
    write_prod(settings.prod_data_path, *feedback)
    environment = child_environment(
        # A row-count snapshot is enough here (the full report is covered above) and fast.
        DATA_DIR=str(data_dir),
        MONITORING_MIN_ROWS="1000",
        REPORTING_PROJECT="from a script",
    )

    done = subprocess.run(
        [sys.executable, *command],
        cwd=REPO,
        env=environment,
        capture_output=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr.decode()
    logs = [json.loads(line) for line in done.stderr.decode().splitlines() if line.startswith("{")]
    assert logs[-1]["message"] == "update done" and logs[-1]["outcome"] == "waiting"
    assert logs[-1]["feedback_rows"] == len(feedback[0])
    (project,) = projects(settings)
    assert project.name == "from a script"
    assert len(snapshots(settings)) == 1


def test_a_snapshot_reads_the_newest_rows_and_counts_them_all(data_dir: Path, feedback) -> None:
    settings = reporting_settings(data_dir, min_rows=1000, snapshot_rows=40, window_rows=25)
    write_prod(settings.prod_data_path, *(column[:100] for column in feedback))

    result = update(settings)

    assert result.values == {"feedback_rows": 100, "snapshot_rows": 40}
    (stored,) = settings.workspace_dir.glob("*/snapshots/*.json")
    assert json.loads(stored.read_bytes())["name"] == "latest 40 of 100 feedback rows"
    # Never fewer than the window: its figures must be whole.
    small = reporting_settings(data_dir, min_rows=1000, snapshot_rows=10, window_rows=25)
    assert update(small).values == {"feedback_rows": 100, "snapshot_rows": 25}


def test_a_snapshot_reads_the_rows_from_postgresql_when_configured(
    data_dir: Path, feedback, database_url: str
) -> None:
    """The dashboard reads either store through ctloop.prod_data; a change is seen by the
    refresher without a file."""
    embeddings, targets, predictions = (column[:60] for column in feedback)
    database = PostgresProductionData(database_url, embeddings.shape[1])
    for index in range(50):
        row = ProductionRow(embeddings[index], targets[index], predictions[index], "v0001", "r")
        database.append(row)
    settings = reporting_settings(data_dir, min_rows=1000, database_url=database_url)
    refresher = Refresher(settings)

    assert refresher.tick().values == {"feedback_rows": 50, "snapshot_rows": 50}
    assert refresher.tick() is None  # nothing changed
    database.append(ProductionRow(embeddings[50], targets[50], predictions[50], "v0001", "r"))
    assert refresher.tick().values == {"feedback_rows": 51, "snapshot_rows": 51}
    assert not settings.prod_data_path.exists()


def test_old_snapshots_are_thinned_then_deleted_and_reports_pruned(
    data_dir: Path, feedback
) -> None:
    settings = reporting_settings(data_dir, min_rows=10, keep_snapshots=1, keep_reports=1)
    write_prod(settings.prod_data_path, *(column[:30] for column in feedback))

    results = [update(settings) for _ in range(3)]

    workspace = Workspace(str(settings.workspace_dir))
    kept = sorted(workspace.list_runs(results[0].project_id))
    # The newest whole; of the older two (the same hour), the newer with its figures only.
    assert kept == [results[1].snapshot_id, results[2].snapshot_id]
    folder = settings.workspace_dir / str(results[0].project_id) / "snapshots"
    thinned = json.loads((folder / f"{results[1].snapshot_id}.json").read_bytes())
    whole = json.loads((folder / f"{results[2].snapshot_id}.json").read_bytes())
    assert thinned["widgets"] == [] and whole["widgets"]
    assert thinned["metric_results"].keys() == whole["metric_results"].keys()
    assert list(settings.reports_path.glob("report-*.html")) == [results[2].html_report]
    assert not list(data_dir.glob(".*.json.*")), "no scratch file left"


def test_retention_plan_keeps_one_per_step_for_the_days_set() -> None:
    hour, day = 3600.0, 86400.0
    now = 40 * day

    def at(seconds: float) -> uuid.UUID:  # a UUIDv7 of that time, as Evidently's ids are
        return uuid.UUID(int=(int(seconds * 1000) << 80) | (0x7 << 76) | (2 << 62) | 1)

    # Every 10 minutes for 40 days: 5,760 snapshots.
    ids = [at(now - minutes * 60) for minutes in range(0, 40 * 24 * 60, 10)]
    decided = plan(ids, now, keep=24, step_seconds=hour, days=35)

    assert sorted(decided.whole, key=snapshot_seconds) == sorted(ids, key=snapshot_seconds)[-24:]
    assert len(decided.whole) + len(decided.thin) + len(decided.delete) == len(ids)
    assert all(snapshot_seconds(i) >= now - 35 * day for i in decided.thin)
    steps = [int(snapshot_seconds(i) // hour) for i in decided.thin]
    assert len(steps) == len(set(steps))  # one per hour
    assert 35 * 24 - 5 <= len(decided.thin) <= 35 * 24  # the hours the whole ones do not cover
    assert plan(ids[:3], now, keep=24, step_seconds=hour, days=35).whole == sorted(
        ids[:3], key=snapshot_seconds
    )


def test_an_unreadable_snapshot_file_is_removed_so_the_ui_can_start(
    data_dir: Path, feedback
) -> None:
    settings = reporting_settings(data_dir, min_rows=1000)
    write_prod(settings.prod_data_path, *(column[:10] for column in feedback))
    first = update(settings)
    folder = settings.workspace_dir / str(first.project_id) / "snapshots"
    torn = folder / f"{first.snapshot_id}.json"
    torn.write_bytes(torn.read_bytes()[:100])  # a crash while Evidently wrote it

    with pytest.raises(json.JSONDecodeError):
        Workspace(str(settings.workspace_dir))  # what `evidently ui` would do at its start

    Retention(settings.workspace_dir, 5, 3600, 35).heal()  # done by a new refresher first

    assert not torn.exists()
    Workspace(str(settings.workspace_dir))
    assert update(settings).outcome == "waiting"


def test_the_refresher_follows_the_file_and_survives_bad_data(data_dir: Path, feedback) -> None:
    settings = reporting_settings(data_dir, min_rows=1000)  # row counts only: fast
    write_prod(settings.prod_data_path, *(column[:10] for column in feedback))
    refresher = Refresher(settings)

    assert refresher.tick().values == {"feedback_rows": 10, "snapshot_rows": 10}
    assert refresher.tick() is None  # nothing changed: no new snapshot

    write_prod(settings.prod_data_path, *(column[10:12] for column in feedback))
    assert refresher.tick().values == {"feedback_rows": 12, "snapshot_rows": 12}

    with settings.prod_data_path.open("ab") as handle:  # a line that is not a row: skipped
        handle.write(b"1.0,2.0,not,a,row\n")
    write_prod(settings.prod_data_path, *(column[12:13] for column in feedback))
    # The line keeps its row number: 14 rows in the file, 13 of them feedback.
    assert refresher.tick().values == {"feedback_rows": 14, "snapshot_rows": 13}

    damaged = settings.prod_data_path.read_bytes()
    settings.prod_data_path.write_bytes(damaged.split(b"\n", 1)[1])  # the header deleted
    with pytest.raises(TableError):
        update(settings)
    assert refresher.tick() is None  # logged, shown, not raised
    assert status(settings).startswith("The last refresh failed: TableError")
    assert len(snapshots(settings)) == 3

    settings.prod_data_path.unlink()  # the file repaired: replaced by a good one
    write_prod(settings.prod_data_path, *feedback)
    rows = len(feedback[0])
    assert refresher.tick().values == {"feedback_rows": rows, "snapshot_rows": rows}
    assert len(snapshots(settings)) == 4
    assert status(settings).startswith("Waiting for feedback")
