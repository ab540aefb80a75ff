"""Settings of the reporting service, read from the environment once (pydantic-settings).

The drift test and the window are the ML core's (stackconf.MonitoringSettings): the dashboard
and the retrain triggers judge drift and quality the same way.
"""

from __future__ import annotations

from pathlib import Path

from ctloop.config import CoreSettings
from stackconf import DataSettings, MonitoringSettings, SecretsSettings, setting

DASHBOARD = "Dashboard"


class ReportingSettings(DataSettings, SecretsSettings, MonitoringSettings):
    """Where the Evidently workspace lives, how often to refresh, what to keep."""

    workspace: Path | None = setting(
        None,
        "Evidently workspace folder; DATA_DIR/evidently when unset",
        env="REPORTING_WORKSPACE",
        section=DASHBOARD,
        compose="no",
    )
    reports_dir: Path | None = setting(
        None,
        "Folder of the standalone HTML reports; DATA_DIR/reports when unset",
        env="REPORTING_REPORTS_DIR",
        section=DASHBOARD,
        compose="no",
    )
    keep_reports: int = setting(
        20,
        "Timestamped HTML reports kept (older ones are deleted)",
        env="REPORTING_KEEP_REPORTS",
        section=DASHBOARD,
        ge=1,
    )
    snapshot_rows: int = setting(
        1000,
        "Each snapshot covers the newest N feedback rows (drift, label drift, quality; the "
        "windowed figures are the newest W of them), whatever the history: its cost is flat in "
        "the rows ever received. The feedback row count it shows is the file's total",
        env="REPORTING_SNAPSHOT_ROWS",
        section=DASHBOARD,
        ge=1,
    )
    keep_snapshots: int = setting(
        24,
        "Newest snapshots kept whole: figures and their report (per-column plots, about 5 MB each "
        "in `evidently ui`'s memory with 32 embedding columns); older ones keep their figures only",
        env="REPORTING_KEEP_SNAPSHOTS",
        section=DASHBOARD,
        ge=1,
    )
    history_step_seconds: int = setting(
        3600,
        "Past the newest REPORTING_KEEP_SNAPSHOTS, one snapshot is kept per step of this length "
        "(the newest of each), with its figures only (about 0.1 MB each)",
        env="REPORTING_HISTORY_STEP_SECONDS",
        section=DASHBOARD,
        ge=60,
    )
    history_days: float = setting(
        35.0,
        "Snapshots older than this are deleted: the dashboard's plots over time cover this many "
        "days",
        env="REPORTING_HISTORY_DAYS",
        section=DASHBOARD,
        gt=0,
    )
    refresh_seconds: float = setting(
        30.0,
        "How often the refresher checks whether the CSVs changed",
        env="REPORTING_REFRESH_SECONDS",
        section=DASHBOARD,
        gt=0,
    )
    project: str = setting(
        "ctloop: production monitoring",
        "Name of the Evidently project (found by name, created once)",
        env="REPORTING_PROJECT",
        section=DASHBOARD,
        min_length=1,
    )
    host: str = setting(
        "127.0.0.1",
        "Address `evidently ui` and the exporter bind (the image sets 0.0.0.0; Compose publishes "
        "the ports on BIND_ADDRESS only)",
        env="REPORTING_HOST",
        section=DASHBOARD,
        compose="no",
    )
    port: int = setting(
        8082,
        "Port of the dashboard (`evidently ui`): the one it listens on, and under Compose the one "
        "published on the host (the container listens on 8082)",
        env="REPORTING_PORT",
        section=DASHBOARD,
        start=True,
        compose="host",
        ge=1,
        le=65535,
    )
    metrics_port: int = setting(
        8083,
        "Port of the Prometheus exporter (/metrics): the one it listens on, and under Compose the "
        "one published on the host (the container listens on 8083)",
        env="REPORTING_METRICS_PORT",
        section=DASHBOARD,
        compose="host",
        ge=1,
        le=65535,
    )
    secret: str | None = setting(
        None,
        "Evidently's secret: writes to the dashboard's API need it in the evidently-secret "
        "header, reads do not; empty: the one generated at first start in "
        "SECRETS_DIR/evidently_secret",
        env="EVIDENTLY_SECRET",
        section="Secrets",
        secret=True,
    )

    @property
    def ref_data_path(self) -> Path:
        # The core names the files; model_construct does not read the environment again.
        return CoreSettings.model_construct(data_dir=self.data_dir).ref_data_path

    @property
    def prod_data_path(self) -> Path:
        return CoreSettings.model_construct(data_dir=self.data_dir).prod_data_path

    @property
    def rows_per_snapshot(self) -> int:
        """How many of the newest production rows a snapshot reads: at least the window."""
        return max(self.snapshot_rows, self.window_rows)

    @property
    def workspace_dir(self) -> Path:
        return self.workspace or self.data_dir / "evidently"

    @property
    def reports_path(self) -> Path:
        return self.reports_dir or self.data_dir / "reports"
