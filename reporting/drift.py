"""The project's drift test on the embedding columns, written once: the same configuration on
every snapshot (Evidently splits a dashboard series when a metric's configuration changes)."""

from __future__ import annotations

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from reporting.settings import ReportingSettings
from reporting.snapshots import headline_values, quiet_numerics


def embedding_drift_preset(settings: ReportingSettings, columns: list[str]) -> DataDriftPreset:
    """Per-column test and threshold from the settings."""
    return DataDriftPreset(
        columns=columns, method=settings.drift_test, threshold=settings.drift_threshold
    )


def embedding_drift(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], settings: ReportingSettings
) -> dict[str, float]:
    """{"drift_share": share of drifted columns, "drifted_columns": their count} of `current`
    against `reference`, by the same test (the windowed figures run it on the latest W rows)."""
    definition = DataDefinition(numerical_columns=columns)
    with quiet_numerics():
        snapshot = Report([embedding_drift_preset(settings, columns)]).run(
            Dataset.from_pandas(current[columns], data_definition=definition),
            Dataset.from_pandas(reference[columns], data_definition=definition),
        )
    values = headline_values(snapshot)
    return {key: values[key] for key in ("drift_share", "drifted_columns")}
