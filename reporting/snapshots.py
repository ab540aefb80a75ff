"""Helpers around one Evidently snapshot: its time stamp, its HTML file, its headline values."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from evidently.core.report import Snapshot

from ctloop.tables import PREDICTION, TARGET
from ctloop.util import utc_now, write_atomic

LATEST_REPORT = "latest.html"
REPORT_PREFIX = "report-"

# Metric type (the `type` of its config, without the "evidently:metric_v2:" prefix) -> log key.
HEADLINE = {
    "FeedbackRows": "feedback_rows",
    "RowCount": "snapshot_rows",
    "MacroF1": "f1",
    "MacroPrecision": "precision",
    "MacroRecall": "recall",
    "BalancedAccuracy": "balanced_accuracy",
    "AccuracyScore": "accuracy",
}


def evidently_timestamp() -> datetime:
    """Now in UTC, without a time zone: `evidently ui` compares snapshot times with naive ones."""
    return utc_now().replace(tzinfo=None)


@contextlib.contextmanager
def quiet_numerics() -> Iterator[None]:
    """Silence the numpy and scikit-learn warnings Evidently triggers on small or one-class data."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def write_html_report(snapshot: Snapshot, folder: Path, timestamp: datetime, keep: int) -> Path:
    """Write report-<UTC time>.html and latest.html (atomically); keep the newest `keep` reports."""
    html = snapshot.get_html_str(as_iframe=False).encode("utf-8")
    path = folder / f"{REPORT_PREFIX}{timestamp:%Y%m%dT%H%M%S.%fZ}.html"
    write_atomic(path, html)
    write_atomic(folder / LATEST_REPORT, html)
    # Names sort by time; each file holds a whole report (~6 MB), so the folder is bounded.
    for old in sorted(folder.glob(f"{REPORT_PREFIX}*.html"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def drop_duplicate_widgets(snapshot: Snapshot) -> None:
    """Empty each metric result's own copy of its widgets; the report's rendering keeps its own.

    A stored snapshot holds every widget twice: in the rendered report (what the UI and the HTML
    show) and in each metric result (used only while rendering). `evidently ui` keeps every
    snapshot in memory, so this halves what each one costs it (about 10 MB -> 5 MB at 32 columns).
    """
    for result in snapshot.metric_results.values():
        result.widget = []


def metric_values(snapshot: Snapshot) -> list[tuple[str, dict, Any]]:
    """(metric type, config, value) of every metric in the snapshot, in report order. A value is
    as the snapshot's JSON holds it: a number, or {"count", "share"} for a count."""
    rows = []
    for metric in snapshot.dict()["metrics"]:
        config = dict(metric["config"])
        kind = str(config.pop("type")).rsplit(":", 1)[-1]
        rows.append((kind, config, metric["value"]))
    return rows


def headline_values(snapshot: Snapshot) -> dict[str, float]:
    """Row count, drift share and count, quality scores and label drift, as plain floats."""
    values: dict[str, float] = {}
    for kind, config, value in metric_values(snapshot):
        if kind in HEADLINE:
            values[HEADLINE[kind]] = float(value)
        elif kind == "DriftedColumnsCount":
            values["drift_share"] = float(value["share"])
            values["drifted_columns"] = float(value["count"])
        elif kind == "ValueDrift" and config["column"] in (TARGET, PREDICTION):
            values[f"{config['column']}_drift_score"] = float(value)
    return values


def column_drift_scores(snapshot: Snapshot) -> dict[str, float]:
    """Drift score of every column tested by a ValueDrift metric (a p-value for ks)."""
    return {
        config["column"]: float(value)
        for kind, config, value in metric_values(snapshot)
        if kind == "ValueDrift"
    }
