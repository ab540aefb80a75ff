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
    keep_snapshots: int = setting(
        100,
        "Snapshots kept in the workspace, the newest (0: all); `evidently ui` holds every one in "
        "memory, about 5 MB each with 32 embedding columns",
        env="REPORTING_KEEP_SNAPSHOTS",
        section=DASHBOARD,
        ge=0,
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
    def workspace_dir(self) -> Path:
        return self.workspace or self.data_dir / "evidently"

    @property
    def reports_path(self) -> Path:
        return self.reports_dir or self.data_dir / "reports"
