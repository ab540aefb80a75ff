"""Build or update the Evidently project: production against the reference, a snapshot a run.

    python -m reporting.project          (or: python reporting/project.py)

Reads top to bottom: load the reference and the newest REPORTING_SNAPSHOT_ROWS production rows,
define the data, run the report, add the run (and write it as a standalone HTML file), apply the
retention (reporting.retention), set the dashboard. Idempotent: whatever the number of runs, one
project and one set of panels; each run adds one snapshot. Its cost does not grow with the
history: it reads a bounded number of rows from the end of prod_data.csv (docs/history.md).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from evidently import DataDefinition, Dataset, MulticlassClassification, Report
from evidently.metrics import RowCount, ValueDrift
from evidently.sdk.models import ProjectModel
from filelock import FileLock

from ctloop.reference import ReferenceMissingError
from ctloop.tables import PREDICTION, TARGET
from reporting.dashboard import dashboard_model, status_text
from reporting.data import load_monitoring_data
from reporting.drift import embedding_drift_preset
from reporting.logs import configure_logging, log
from reporting.metrics import (
    AccuracyScore,
    BalancedAccuracy,
    MacroF1,
    MacroPrecision,
    MacroRecall,
)
from reporting.retention import Retention
from reporting.settings import ReportingSettings
from reporting.snapshots import (
    drop_duplicate_widgets,
    evidently_timestamp,
    headline_values,
    quiet_numerics,
    write_html_report,
)
from reporting.window import (
    FeedbackRows,
    WindowFigures,
    window_figures,
    window_metrics,
    window_versions,
)
from reporting.workspace import WorkspaceFiles

# Target and prediction are class labels: chi-square against the reference class counts.
LABEL_DRIFT_METHOD = "chisquare"
LABEL_DRIFT_THRESHOLD = 0.05
PROJECT_DESCRIPTION = (
    "Data drift of the embeddings and classification quality of the served model, "
    "from data/ref_data.csv (reference) and data/prod_data.csv (feedback)."
)


@dataclass(frozen=True)
class UpdateResult:
    """What one update did."""

    outcome: str  # "snapshot", "waiting" (too few production rows) or "no-reference"
    project_id: uuid.UUID
    snapshot_id: uuid.UUID | None = None
    feedback_rows: int = 0  # every row received so far
    snapshot_rows: int = 0  # the newest ones, which the snapshot covers
    html_report: Path | None = None
    seconds: float = 0.0
    values: dict[str, float] = field(default_factory=dict)
    window: WindowFigures | None = None  # the latest W rows, overall and per version
    snapshot_time: datetime | None = None  # UTC, naive (as Evidently stores it)


def update(settings: ReportingSettings) -> UpdateResult:
    """Add one snapshot of reference vs production to the project, then set the dashboard."""
    started = time.perf_counter()
    with open_project(settings) as (workspace, project):
        # 1. Load the reference and the newest production rows (same columns: PCA_1..PCA_n,
        #    target, prediction); at least the window, so that its figures are whole.
        try:
            data = load_monitoring_data(settings, settings.rows_per_snapshot)
        except ReferenceMissingError as error:
            status = status_text(settings, reference_missing=str(error))
            workspace.save_dashboard(project.id, dashboard_model(project.id, settings, status))
            return UpdateResult("no-reference", project.id, seconds=time.perf_counter() - started)

        # 2. Data definition: embeddings are numbers, target and prediction class labels.
        definition = DataDefinition(
            numerical_columns=data.embedding_columns,
            categorical_columns=[TARGET, PREDICTION],
            classification=[MulticlassClassification(target=TARGET, prediction_labels=PREDICTION)],
        )
        with quiet_numerics():  # column statistics of an empty frame divide by zero
            current = Dataset.from_pandas(data.production, data_definition=definition)
            reference = Dataset.from_pandas(data.reference, data_definition=definition)

        # 3. Report: every metric once enough feedback has arrived, the row count until then.
        rows = len(data.production)
        ready = rows >= settings.min_rows
        versions = window_versions(data.production, settings.window_rows) if ready else []
        columns = data.embedding_columns
        metrics = (
            monitoring_metrics(settings, columns, versions)
            if ready
            else [FeedbackRows(), RowCount()]
        )
        timestamp = evidently_timestamp()
        report = Report(
            metrics,
            tags=["complete" if ready else "waiting-for-feedback"],
            metadata={
                "feedback_rows": str(data.total_rows),
                "snapshot_rows": str(rows),
                "reference_rows": str(len(data.reference)),
                "dropped_rows": str(data.dropped_rows),
                "model_versions": " ".join(data.model_versions),
            },
        )
        with quiet_numerics():
            snapshot = report.run(
                current,
                reference,
                timestamp=timestamp,
                name=snapshot_name(rows, data.total_rows),
            )

        # 4. Add the run; the same snapshot as a standalone HTML file for people who want one.
        html_report = write_html_report(
            snapshot, settings.reports_path, timestamp, settings.keep_reports
        )
        values = headline_values(snapshot)
        window = window_figures(snapshot) if ready else None
        drop_duplicate_widgets(snapshot)
        snapshot_id = workspace.add_run(project.id, snapshot)
        retention(settings).apply(workspace, project.id, time.time())

        # 5. Dashboard: saved whole with fixed panel ids, so re-running never duplicates panels.
        status = status_text(settings, data, timestamp, ready, values, window)
        workspace.save_dashboard(
            project.id, dashboard_model(project.id, settings, status, versions)
        )

    return UpdateResult(
        "snapshot" if ready else "waiting",
        project.id,
        snapshot_id=snapshot_id,
        feedback_rows=data.total_rows,
        snapshot_rows=rows,
        html_report=html_report,
        seconds=time.perf_counter() - started,
        values=values,
        window=window,
        snapshot_time=timestamp,
    )


def monitoring_metrics(
    settings: ReportingSettings, embedding_columns: list[str], versions: Sequence[str] = ()
) -> list:
    """The report's metrics; their configuration never changes between runs (one series each),
    except the per-version windowed ones: one series per model version in the window."""
    return [
        FeedbackRows(),
        RowCount(),
        MacroF1(),
        MacroPrecision(),
        MacroRecall(),
        AccuracyScore(),
        BalancedAccuracy(),
        embedding_drift_preset(settings, embedding_columns),
        ValueDrift(column=TARGET, method=LABEL_DRIFT_METHOD, threshold=LABEL_DRIFT_THRESHOLD),
        ValueDrift(column=PREDICTION, method=LABEL_DRIFT_METHOD, threshold=LABEL_DRIFT_THRESHOLD),
        *window_metrics(settings, embedding_columns, list(versions)),
    ]


def snapshot_name(rows: int, total: int) -> str:
    """How the UI lists a snapshot: the rows it covers, and of how many when not all."""
    return f"{rows} feedback rows" if rows >= total else f"latest {rows} of {total} feedback rows"


def retention(settings: ReportingSettings) -> Retention:
    """The workspace's retention, one per process and workspace (it remembers what it thinned)."""
    return _retention(
        settings.workspace_dir,
        settings.keep_snapshots,
        settings.history_step_seconds,
        settings.history_days,
    )


@functools.cache
def _retention(workspace_dir: Path, keep: int, step: float, days: float) -> Retention:
    return Retention(workspace_dir, keep, step, days)


@contextlib.contextmanager
def open_project(settings: ReportingSettings) -> Iterator[tuple[WorkspaceFiles, ProjectModel]]:
    """The workspace and its project, under a lock: the service and a manual run may overlap."""
    settings.workspace_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(settings.workspace_dir / ".update.lock"):
        retention(settings).heal()  # `evidently ui` cannot start with a torn snapshot file
        workspace = WorkspaceFiles(settings.workspace_dir)
        yield workspace, ensure_project(workspace, settings)


def ensure_project(workspace: WorkspaceFiles, settings: ReportingSettings) -> ProjectModel:
    """The project named settings.project, created on the first run only."""
    found = workspace.find_projects(settings.project)
    if len(found) > 1:
        log.warning(
            "several projects share the name; using the oldest", extra={"count": len(found)}
        )
    if found:
        # Never re-saved: `evidently ui` reloads a project whose metadata.json changes, and a
        # half-written file there stops its file watcher.
        return found[0]
    project = workspace.create_project(settings.project, PROJECT_DESCRIPTION)
    log.info("project created", extra={"project_id": str(project.id), "project": settings.project})
    return project


def prepare(settings: ReportingSettings) -> uuid.UUID:
    """Create the workspace and project if needed, before `evidently ui` loads the workspace."""
    return save_status(settings, "Starting: computing a snapshot of the current data.")


def save_status(settings: ReportingSettings, text: str) -> uuid.UUID:
    """Show `text` in the dashboard's status panel (creating the project if needed)."""
    with open_project(settings) as (workspace, project):
        workspace.save_dashboard(project.id, dashboard_model(project.id, settings, text))
    return project.id


def main() -> int:
    """Run one update and print what it did."""
    configure_logging()
    settings = ReportingSettings()
    result = update(settings)
    log.info(
        "update done",
        extra={
            "outcome": result.outcome,
            "project_id": str(result.project_id),
            "snapshot_id": str(result.snapshot_id) if result.snapshot_id else None,
            "html_report": str(result.html_report) if result.html_report else None,
            "seconds": round(result.seconds, 3),
            **result.values,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
