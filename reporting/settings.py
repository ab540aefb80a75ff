"""Settings of the reporting service, read from the environment once (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ctloop.config import CoreSettings


class ReportingSettings(BaseSettings):
    """Where the data and the Evidently workspace live, how often to refresh, what to measure."""

    model_config = SettingsConfigDict(
        env_prefix="REPORTING_", extra="ignore", frozen=True, validate_by_name=True
    )

    data_dir: Path = Field(
        Path("data"),
        validation_alias=AliasChoices("DATA_DIR"),
        description="Folder of ref_data.csv and prod_data.csv (shared with the ML core)",
    )
    workspace: Path | None = Field(
        None, description="Evidently workspace folder; DATA_DIR/evidently when unset"
    )
    reports_dir: Path | None = Field(
        None, description="Folder of the standalone HTML reports; DATA_DIR/reports when unset"
    )
    keep_reports: int = Field(
        20, ge=1, description="Timestamped HTML reports kept (older ones are deleted)"
    )
    keep_snapshots: int = Field(
        100,
        ge=0,
        description="Snapshots kept in the workspace, the newest (0: all); `evidently ui` holds "
        "every one in memory, about 5 MB each with 32 embedding columns",
    )
    refresh_seconds: float = Field(
        30.0, gt=0, description="How often the refresher checks whether the CSVs changed"
    )
    min_rows: int = Field(
        30,
        ge=2,
        description="Production rows needed before drift and quality are reported",
    )
    project: str = Field(
        "ctloop: production monitoring",
        min_length=1,
        description="Name of the Evidently project (found by name, created once)",
    )
    drift_method: str = Field(
        "ks",
        description="Evidently stat test for each embedding column (ks, wasserstein, psi, ...)",
    )
    drift_threshold: float = Field(
        0.05,
        gt=0,
        description="Drift threshold of that test (a p-value for ks, a distance for wasserstein)",
    )
    window_rows: int = Field(
        100,
        ge=2,
        description="W: the windowed quality and drift figures look at the newest W feedback rows",
    )
    metrics_port: int = Field(
        8083, ge=1, le=65535, description="Port of the Prometheus exporter (/metrics)"
    )
    host: str = Field(
        "127.0.0.1",
        description="Address `evidently ui` binds (the container sets 0.0.0.0; Compose publishes "
        "the port on 127.0.0.1 unless BIND_ADDRESS opens it)",
    )
    secret: str | None = Field(
        None,
        validation_alias=AliasChoices("EVIDENTLY_SECRET"),
        description="Evidently's secret: writes to the UI's API need it in the evidently-secret "
        "header, reads do not. When unset, the one generated in SECRETS_DIR/evidently_secret",
    )
    secrets_dir: Path = Field(
        Path("secrets"),
        validation_alias=AliasChoices("SECRETS_DIR"),
        description="Folder of the stack's generated secrets (shared with the ML core)",
    )
    port: int = Field(8082, ge=1, le=65535, description="Port of `evidently ui`")

    @field_validator("drift_method")
    @classmethod
    def _known_numerical_test(cls, value: str) -> str:
        """Fail at start-up, not at the first report, on a misspelt stat test."""
        from evidently.legacy.calculations.stattests.registry import get_registered_stattest
        from evidently.legacy.core import ColumnType

        try:
            get_registered_stattest(value, ColumnType.Numerical)
        except Exception as error:
            raise ValueError(f"{value!r} is not an Evidently stat test for numbers") from error
        return value

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
