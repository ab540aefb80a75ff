"""The project's dashboard, defined in code and saved whole on every run.

Panels and the tab have ids derived from the project id, and the dashboard is replaced rather
than appended to, so running the update again never duplicates a panel. Only the status text
changes between runs.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from evidently.sdk.models import DashboardModel, DashboardTabModel, PanelMetric
from evidently.sdk.panels import counter_panel, line_plot_panel, text_panel

from ctloop.tables import PREDICTION, TARGET
from reporting.data import MonitoringData
from reporting.settings import ReportingSettings
from reporting.window import MEASURES, WindowFigures

TAB_TITLE = "Monitoring"


def about_text(settings: ReportingSettings) -> str:
    """What the project shows, in a few sentences."""
    return (
        "Reference: data/ref_data.csv, the embeddings (PCA_1..PCA_n) and classes the model "
        "learnt from. Current: data/prod_data.csv, one row per feedback: the image's "
        "embedding, its true class (target) and the served model's answer (prediction). The "
        "reference has no model answers: the prediction distribution is compared with its "
        "class distribution. "
        f"Each snapshot covers the newest {settings.rows_per_snapshot} feedback rows "
        "(REPORTING_SNAPSHOT_ROWS), whatever the history. "
        f"Drift: share of embedding columns whose distribution differs from the reference "
        f"({settings.drift_test} test, threshold {settings.drift_threshold}). Quality on the "
        "same rows, as scikit-learn computes it: macro F1, precision and recall, balanced "
        "accuracy (mean recall over the classes present in the feedback) and accuracy. A new "
        "snapshot is added whenever prod_data.csv grows; each one is also an HTML report in "
        f"{settings.reports_path}. The newest {settings.keep_snapshots} snapshots keep their "
        f"report; older ones keep their figures, one per {settings.history_step_seconds:g} s, "
        f"for {settings.history_days:g} days. The 'latest {settings.window_rows} rows' panels "
        "look at the newest feedback rows only (MONITORING_WINDOW_ROWS), overall and per model "
        "version (the version that answered each row), so they follow a drift and a new version "
        "quickly; the same figures are Prometheus gauges on the exporter's /metrics "
        f"(port {settings.metrics_port})."
    )


def status_text(
    settings: ReportingSettings,
    data: MonitoringData | None = None,
    timestamp: datetime | None = None,
    ready: bool = False,
    values: dict[str, float] | None = None,
    window: WindowFigures | None = None,
    reference_missing: str | None = None,
) -> str:
    """What the latest update found, for the status panel."""
    if reference_missing is not None or data is None or timestamp is None:
        return (
            f"Waiting for the reference data: {reference_missing}. Build it with "
            "`python -m ctloop build-reference` (the serving service does it on its first start)."
        )
    rows = len(data.production)
    total = data.total_rows
    when = f"{timestamp:%Y-%m-%d %H:%M:%S} UTC"
    if not ready:
        return (
            f"Waiting for feedback: {rows} of the {settings.min_rows} production rows needed "
            f"before drift and quality are reported (checked every {settings.refresh_seconds:g} s"
            f"; last check {when}). Send feedback through the web page or POST /feedback."
        )
    versions = ", ".join(data.model_versions) or "unknown"
    absent = sorted(set(data.classes) - set(data.production[TARGET]))
    missing = (
        f" Classes absent from the feedback (left out of balanced accuracy): {', '.join(absent)}."
        if absent
        else ""
    )
    dropped = (
        f" {data.dropped_rows} production rows without a target or a prediction were left out."
        if data.dropped_rows
        else ""
    )
    values = values or {}
    # Figures in words too: Evidently's counters show "no value" for an exact 0.
    figures = (
        f" Drift: {values.get('drifted_columns', 0):.0f} of {len(data.embedding_columns)} "
        f"embedding columns ({values.get('drift_share', 0):.0%}). F1 {values.get('f1', 0):.3f}, "
        f"balanced accuracy {values.get('balanced_accuracy', 0):.3f}, recall "
        f"{values.get('recall', 0):.3f}, precision {values.get('precision', 0):.3f}."
    )
    return (
        f"Last snapshot {when}: the latest {rows} of {total} feedback rows (model versions: "
        f"{versions}) against {len(data.reference)} reference rows."
        f"{figures}{window_text(window)}{missing}{dropped}"
    )


def window_text(window: WindowFigures | None) -> str:
    """The windowed figures in words, overall and per version."""
    if window is None or not window.rows:
        return ""
    quality = window.quality
    per_version = "; ".join(
        f"{version}: {rows:.0f} rows, accuracy "
        f"{window.version_quality.get(version, {}).get('accuracy', 0):.3f}"
        for version, rows in sorted(window.version_rows.items())
    )
    return (
        f" Latest {window.rows:.0f} rows: drift {window.drift_share or 0:.0%}, accuracy "
        f"{quality.get('accuracy', 0):.3f}, F1 {quality.get('macro_f1', 0):.3f}, balanced accuracy "
        f"{quality.get('balanced_accuracy', 0):.3f} ({per_version})."
    )


def dashboard_model(
    project_id: uuid.UUID,
    settings: ReportingSettings,
    status: str,
    versions: list[str] | tuple[str, ...] = (),
) -> DashboardModel:
    """Every panel of the dashboard, with stable ids; `status` is the text of the status panel,
    `versions` the model versions of the window (one line each in the per-version plots)."""
    latest = f"latest {settings.rows_per_snapshot} feedback rows"
    share = {
        "value_type": "share",
        # Only the series of the current drift configuration, should it ever change.
        "method": settings.drift_test,
        "threshold": str(settings.drift_threshold),
    }
    panels = {
        "about": text_panel(title=settings.project, description=about_text(settings)),
        "status": text_panel(title="Status", description=status),
        "rows": counter_panel(
            title="Feedback rows",
            values=[_value("FeedbackRows", "rows")],
            size="half",
        ),
        "drift-share": counter_panel(
            title="Share of drifted embedding columns",
            values=[_value("DriftedColumnsCount", "share (shown as 'no value' when 0)", share)],
            size="half",
        ),
        "f1": counter_panel(title="F1 (macro)", values=[_value("MacroF1", "F1")], size="half"),
        "balanced-accuracy": counter_panel(
            title="Balanced accuracy",
            values=[_value("BalancedAccuracy", "balanced accuracy")],
            size="half",
        ),
        "recall": counter_panel(
            title="Recall (macro)", values=[_value("MacroRecall", "recall")], size="half"
        ),
        "precision": counter_panel(
            title="Precision (macro)", values=[_value("MacroPrecision", "precision")], size="half"
        ),
        "drift-plot": line_plot_panel(
            title=f"Share of drifted embedding columns, {latest}, per snapshot",
            values=[_value("DriftedColumnsCount", "drift share", share)],
            size="half",
        ),
        "label-drift-plot": line_plot_panel(
            title="Target and prediction against the reference classes (chi-square p-value)",
            values=[
                _value("ValueDrift", "target", {"column": TARGET}),
                _value("ValueDrift", "prediction", {"column": PREDICTION}),
            ],
            size="half",
        ),
        "quality-plot": line_plot_panel(
            title=f"Quality on the {latest}, per snapshot",
            values=[
                _value("MacroF1", "F1 (macro)"),
                _value("BalancedAccuracy", "balanced accuracy"),
                _value("MacroRecall", "recall (macro)"),
                _value("MacroPrecision", "precision (macro)"),
                _value("AccuracyScore", "accuracy"),
            ],
            size="full",
        ),
    }
    panels.update(window_panels(settings, list(versions)))
    for key, panel in panels.items():
        panel.id = uuid.uuid5(project_id, f"panel:{key}")
    tab = DashboardTabModel(
        id=uuid.uuid5(project_id, "tab:monitoring"),
        title=TAB_TITLE,
        panels=[panel.id for panel in panels.values()],
    )
    return DashboardModel(tabs=[tab], panels=list(panels.values()))


def _value(metric: str, legend: str, labels: dict[str, str] | None = None) -> PanelMetric:
    return PanelMetric(legend=legend, metric=metric, metric_labels=labels or {})


def window_panels(settings: ReportingSettings, versions: list[str]) -> dict:
    """The latest-W-rows view: counters, quality and drift over snapshots, one line per version."""
    w = str(settings.window_rows)
    latest = f"latest {settings.window_rows} feedback rows"
    snapshot = f"latest {settings.rows_per_snapshot} rows"
    names = {
        "accuracy": "accuracy",
        "macro_f1": "F1 (macro)",
        "balanced_accuracy": "balanced accuracy",
        "macro_recall": "recall (macro)",
        "macro_precision": "precision (macro)",
    }

    def quality(measure: str) -> PanelMetric:
        return _value("WindowQuality", names[measure], {"measure": measure, "window_rows": w})

    def per_version(metric: str, labels: dict[str, str]) -> list[PanelMetric]:
        return [
            _value(metric, version, {**labels, "model_version": version, "window_rows": w})
            for version in versions
        ]

    return {
        "window-accuracy": counter_panel(
            title=f"Accuracy, {latest}", values=[quality("accuracy")], size="half"
        ),
        "window-drift-share": counter_panel(
            title=f"Share of drifted embedding columns, {latest}",
            values=[
                _value(
                    "WindowDriftedColumns",
                    "share (shown as 'no value' when 0)",
                    {"value_type": "share", "window_rows": w},
                )
            ],
            size="half",
        ),
        "window-quality-plot": line_plot_panel(
            title=f"Quality on the {latest}, per snapshot",
            values=[quality(measure) for measure in MEASURES],
            size="full",
        ),
        "window-drift-plot": line_plot_panel(
            title=(f"Share of drifted embedding columns: the {snapshot} and the {latest}"),
            values=[
                _value(
                    "DriftedColumnsCount",
                    snapshot,
                    {
                        "value_type": "share",
                        "method": settings.drift_test,
                        "threshold": str(settings.drift_threshold),
                    },
                ),
                _value(
                    "WindowDriftedColumns",
                    latest,
                    {"value_type": "share", "window_rows": w},
                ),
            ],
            size="full",
        ),
        "version-accuracy-plot": line_plot_panel(
            title=f"Accuracy of each model version on its rows among the {latest}",
            values=per_version("VersionWindowQuality", {"measure": "accuracy"}),
            size="half",
        ),
        "version-f1-plot": line_plot_panel(
            title=f"F1 (macro) of each model version on its rows among the {latest}",
            values=per_version("VersionWindowQuality", {"measure": "macro_f1"}),
            size="half",
        ),
        "version-rows-plot": line_plot_panel(
            title=f"Rows each model version answered among the {latest}",
            values=per_version("VersionWindowRows", {}),
            size="full",
        ),
    }
