"""The project's drift test on the embedding columns, written once: the same configuration on
every snapshot (Evidently splits a dashboard series when a metric's configuration changes)."""

from __future__ import annotations

from evidently.presets import DataDriftPreset

from reporting.settings import ReportingSettings


def embedding_drift_preset(settings: ReportingSettings, columns: list[str]) -> DataDriftPreset:
    """Per-column test and threshold from the settings."""
    return DataDriftPreset(
        columns=columns, method=settings.drift_test, threshold=settings.drift_threshold
    )
