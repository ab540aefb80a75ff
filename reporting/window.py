"""Quality and drift over the latest W feedback rows, overall and per model version.

The snapshot's figures cover its REPORTING_SNAPSHOT_ROWS newest rows, which mix model versions
and react slowly. These Evidently metrics look at the newest `window_rows` labelled production rows
only (prod_data.csv order), and the per-version ones at the rows of that window a given version
answered (its `model_version` column). They run inside the same report as the snapshot's other
figures, so one snapshot holds both and `evidently ui` stores and plots them like any other
metric; the Prometheus exporter (reporting.exporter) reads them back from the snapshot.

- WindowQuality(measure): accuracy, F1, precision, recall or balanced accuracy of the window;
- VersionWindowQuality(measure, model_version): the same on the rows one version answered;
- WindowRows / VersionWindowRows: how many rows those are;
- WindowDriftedColumns: the dashboard's embedding drift test on the window, computed by
  ctloop.drift (the drift trigger's code, which gives Evidently's per-column results: tested) and
  not by a nested DataDriftPreset report, whose per-column plots nobody sees (it was 40 % of a
  snapshot's time at 32 columns).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar, cast

import numpy as np
import pandas as pd
from evidently.core.datasets import Dataset
from evidently.core.metric_types import (
    CountCalculation,
    CountMetric,
    CountValue,
    SingleValue,
    SingleValueCalculation,
    SingleValueMetric,
)
from evidently.core.report import Context, Snapshot

from ctloop.drift import DriftTest, drifted_columns
from ctloop.evaluate import METRICS, SCORERS
from reporting.data import ROW, VERSION
from reporting.settings import ReportingSettings
from reporting.snapshots import metric_values

MEASURES = METRICS  # accuracy, macro_f1, macro_precision, macro_recall, balanced_accuracy


def score(measure: str, target: np.ndarray, prediction: np.ndarray) -> float:
    """One quality measure of these labels, by its one definition (ctloop.evaluate)."""
    return SCORERS[measure](target, prediction)


def latest_rows(frame: pd.DataFrame, window_rows: int, version: str | None = None) -> pd.DataFrame:
    """The newest `window_rows` rows of `frame`, then those answered by `version` if given."""
    window = frame.tail(window_rows)
    if version is not None:
        versions = window[VERSION] if VERSION in window else pd.Series("", index=window.index)
        window = window[versions.astype(str) == version]
    return window


def window_versions(production: pd.DataFrame, window_rows: int) -> list[str]:
    """The model versions that answered a row of the window, sorted (the per-version series)."""
    if VERSION not in production:
        return []
    return sorted({v for v in latest_rows(production, window_rows)[VERSION].astype(str) if v})


class WindowMetric(SingleValueMetric):
    """Base: a figure of the newest `window_rows` rows of the current data."""

    window_rows: int
    classification_name: str = "default"


class WindowQuality(WindowMetric):
    """A quality measure of the served predictions over the window (every version)."""

    measure: str


class VersionWindowQuality(WindowMetric):
    """The same measure on the window's rows that one model version answered."""

    measure: str
    model_version: str


class WindowRows(WindowMetric):
    """Rows in the window (fewer than window_rows while production is young)."""


class VersionWindowRows(WindowMetric):
    """Rows of the window that one model version answered."""

    model_version: str


TWindow = TypeVar("TWindow", bound=WindowMetric)


class _WindowCalculation(SingleValueCalculation[TWindow], Generic[TWindow], abc.ABC):
    """The window's rows (of one version, for the per-version metrics), target and prediction."""

    def window(self, context: Context, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
        metric = self.metric
        classification = context.data_definition.get_classification(metric.classification_name)
        if classification is None or classification.prediction_labels is None:
            raise ValueError(
                f"the data definition has no classification {metric.classification_name}"
            )
        version = getattr(metric, "model_version", None)
        rows = latest_rows(data.as_dataframe(), metric.window_rows, version)
        return (
            rows[classification.target].astype(str).to_numpy(),
            rows[classification.prediction_labels].astype(str).to_numpy(),
        )

    def who(self) -> str:
        version = getattr(self.metric, "model_version", None)
        return f"latest {self.metric.window_rows} rows" + (f", {version}" if version else "")


class _QualityCalculation(_WindowCalculation[TWindow], Generic[TWindow], abc.ABC):
    def calculate(
        self, context: Context, current_data: Dataset, reference_data: Dataset | None
    ) -> SingleValue:
        target, prediction = self.window(context, current_data)
        if len(target) == 0:
            raise ValueError(f"{self.display_name()}: no feedback rows in the window")
        return self.result(score(self.metric.measure, target, prediction))

    def display_name(self) -> str:
        return f"{self.metric.measure} ({self.who()})"


class _RowsCalculation(_WindowCalculation[TWindow], Generic[TWindow], abc.ABC):
    def calculate(
        self, context: Context, current_data: Dataset, reference_data: Dataset | None
    ) -> SingleValue:
        return self.result(len(self.window(context, current_data)[0]))

    def display_name(self) -> str:
        return f"rows ({self.who()})"


class WindowQualityCalculation(_QualityCalculation[WindowQuality]):
    pass


class VersionWindowQualityCalculation(_QualityCalculation[VersionWindowQuality]):
    pass


class WindowRowsCalculation(_RowsCalculation[WindowRows]):
    pass


class VersionWindowRowsCalculation(_RowsCalculation[VersionWindowRows]):
    pass


class FeedbackRows(SingleValueMetric):
    """Feedback rows received so far: the newest row's number in prod_data.csv. A snapshot reads
    only the newest rows; their numbers say how many came before."""


class FeedbackRowsCalculation(SingleValueCalculation[FeedbackRows]):
    def calculate(
        self, context: Context, current_data: Dataset, reference_data: Dataset | None
    ) -> SingleValue:
        frame = current_data.as_dataframe()
        numbers = frame[ROW] if ROW in frame else pd.Series(range(1, len(frame) + 1))
        return self.result(int(numbers.max()) if len(numbers) else 0)

    def display_name(self) -> str:
        return "feedback rows received"


class WindowDriftedColumns(CountMetric):
    """Drifted embedding columns (count and share) of the window against the reference."""

    window_rows: int
    columns: list[str]
    method: str
    threshold: float


class WindowDriftedColumnsCalculation(CountCalculation[WindowDriftedColumns]):
    title: ClassVar[str] = "Drifted embedding columns"

    def calculate(
        self, context: Context, current_data: Dataset, reference_data: Dataset | None
    ) -> CountValue:
        if reference_data is None:
            raise ValueError("window drift needs the reference data")
        metric = self.metric
        columns = metric.columns
        window = current_data.as_dataframe()[columns].tail(metric.window_rows)
        drifted = drifted_columns(
            reference_data.as_dataframe()[columns].to_numpy(dtype=np.float64),
            window.to_numpy(dtype=np.float64),
            cast(DriftTest, metric.method),
            metric.threshold,
        )
        return self.result(int(drifted.sum()), float(drifted.mean()))

    def display_name(self) -> str:
        return f"drifted embedding columns (latest {self.metric.window_rows} rows)"


def window_metrics(
    settings: ReportingSettings, embedding_columns: list[str], versions: list[str]
) -> list:
    """The report's windowed metrics: overall, then per version present in the window."""
    w = settings.window_rows
    metrics: list = [WindowRows(window_rows=w)]
    metrics += [WindowQuality(window_rows=w, measure=m) for m in MEASURES]
    metrics.append(
        WindowDriftedColumns(
            window_rows=w,
            columns=embedding_columns,
            method=settings.drift_test,
            threshold=settings.drift_threshold,
        )
    )
    for version in versions:
        metrics.append(VersionWindowRows(window_rows=w, model_version=version))
        metrics += [
            VersionWindowQuality(window_rows=w, measure=m, model_version=version) for m in MEASURES
        ]
    return metrics


@dataclass
class WindowFigures:
    """The windowed values of one snapshot, as plain numbers."""

    window_rows: int = 0  # the setting W
    rows: float | None = None  # rows actually in the window
    quality: dict[str, float] = field(default_factory=dict)  # measure -> value
    drift_share: float | None = None
    drifted_columns: float | None = None
    version_rows: dict[str, float] = field(default_factory=dict)  # version -> rows
    version_quality: dict[str, dict[str, float]] = field(default_factory=dict)  # version -> ...


def window_figures(snapshot: Snapshot) -> WindowFigures:
    """Read the windowed metrics' values back from a snapshot."""
    figures = WindowFigures()
    for kind, config, value in metric_values(snapshot):
        if kind == "WindowRows":
            figures.rows, figures.window_rows = float(value), int(config["window_rows"])
        elif kind == "WindowQuality":
            figures.quality[config["measure"]] = float(value)
        elif kind == "WindowDriftedColumns":
            figures.drift_share = float(value["share"])
            figures.drifted_columns = float(value["count"])
        elif kind == "VersionWindowRows":
            figures.version_rows[config["model_version"]] = float(value)
        elif kind == "VersionWindowQuality":
            by_version = figures.version_quality.setdefault(config["model_version"], {})
            by_version[config["measure"]] = float(value)
    return figures
