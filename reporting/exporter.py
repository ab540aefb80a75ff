"""Prometheus exporter of the reporting service: what each snapshot computed, as gauges.

    GET http://<host>:REPORTING_METRICS_PORT/metrics

Refreshed with every snapshot (the refresher tells it what happened). Names follow Prometheus
conventions: `ctloop_` prefix, ratios as 0..1, times in seconds, labels bounded (`measure` has five
values; `version` only the model versions that answered a row of the window).

- ctloop_drift_share, ctloop_drifted_columns: the snapshot's rows (the newest
  REPORTING_SNAPSHOT_ROWS) against the reference;
- ctloop_window_drift_share, ctloop_window_drifted_columns: the latest W rows (the drift alert);
- ctloop_window_quality{measure}: accuracy, macro_f1, macro_precision, macro_recall and
  balanced_accuracy of the window (ctloop.evaluate's names and definitions);
- ctloop_window_version_quality{measure,version}: the same on the rows each version answered;
- ctloop_window_rows, ctloop_window_version_rows{version}, ctloop_window_size_rows (W);
- ctloop_reporting_snapshot_rows, ctloop_reporting_snapshot_timestamp_seconds,
  ctloop_reporting_snapshot_age_seconds: what the latest snapshot covers, when it was computed;
- ctloop_reporting_last_success_timestamp_seconds (the last check that left the dashboard up to
  date: a new snapshot, or nothing changed), ctloop_reporting_last_failure_timestamp_seconds,
  ctloop_reporting_last_update_ok (1 or 0), ctloop_reporting_updates_total{outcome},
  ctloop_reporting_update_duration_seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timezone
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from reporting.project import UpdateResult
from reporting.window import WindowFigures

OUTCOMES = ("snapshot", "waiting", "no-reference", "failed")


@dataclass(frozen=True)
class ExportedState:
    """What the latest checks found; replaced whole, so a scrape never sees half an update."""

    values: dict[str, float] = field(default_factory=dict)  # headline values of the snapshot
    window: WindowFigures | None = None
    snapshot_timestamp: float | None = None
    update_seconds: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_ok: bool | None = None
    updates: Counter = field(default_factory=Counter)


class SnapshotCollector:
    """A prometheus_client collector over the latest ExportedState; fed by the refresher."""

    def __init__(self, window_rows: int, clock: Callable[[], float] = time.time) -> None:
        self.window_rows = window_rows
        self._clock = clock
        self._lock = threading.Lock()
        self.state = ExportedState()

    # -- fed by the refresher ---------------------------------------------------------------
    def checked(self) -> None:
        """The data did not change: the latest snapshot is still up to date."""
        self._update(last_success=self._clock(), last_ok=True)

    def updated(self, result: UpdateResult) -> None:
        """An update ran: keep its figures (none while waiting for feedback)."""
        snapshot_time = None
        if result.snapshot_time is not None:
            snapshot_time = result.snapshot_time.replace(tzinfo=timezone.utc).timestamp()
        ready = result.outcome == "snapshot"
        with self._lock:
            updates = self.state.updates + Counter({result.outcome: 1})
            self.state = replace(
                self.state,
                values=dict(result.values),
                window=result.window if ready else None,
                snapshot_timestamp=snapshot_time or self.state.snapshot_timestamp,
                update_seconds=result.seconds,
                last_success=self._clock(),
                last_ok=True,
                updates=updates,
            )

    def failed(self) -> None:
        """An update raised; the previous figures stay exported."""
        with self._lock:
            updates = self.state.updates + Counter({"failed": 1})
            self.state = replace(
                self.state, last_failure=self._clock(), last_ok=False, updates=updates
            )

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self.state = replace(self.state, **changes)

    # -- read by Prometheus -----------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        state = self.state
        yield from _snapshot_metrics(state, self.window_rows)
        yield from _health_metrics(state, self._clock())


def _gauge(name: str, documentation: str, value: float | None, unit: str = "") -> Iterator[Metric]:
    if value is not None:
        yield GaugeMetricFamily(name, documentation, value=value, unit=unit)


def _snapshot_metrics(state: ExportedState, window_rows: int) -> Iterator[Metric]:
    values, window = state.values, state.window
    yield from _gauge(
        "ctloop_drift_share",
        "Share of embedding columns drifted, the snapshot's rows against the reference",
        values.get("drift_share"),
    )
    yield from _gauge(
        "ctloop_drifted_columns",
        "Embedding columns drifted, the snapshot's rows against the reference",
        values.get("drifted_columns"),
    )
    yield from _gauge(
        "ctloop_reporting_snapshot_rows",
        "Feedback rows the latest snapshot covers (the newest ones)",
        values.get("snapshot_rows"),
    )
    yield GaugeMetricFamily(
        "ctloop_window_size_rows", "W: feedback rows the windowed figures look at", window_rows
    )
    if window is None:
        return
    yield from _gauge(
        "ctloop_window_drift_share",
        "Share of embedding columns drifted, latest W feedback rows against the reference",
        window.drift_share,
    )
    yield from _gauge(
        "ctloop_window_drifted_columns",
        "Embedding columns drifted, latest W feedback rows against the reference",
        window.drifted_columns,
    )
    yield from _gauge("ctloop_window_rows", "Feedback rows in the window", window.rows)
    quality = GaugeMetricFamily(
        "ctloop_window_quality",
        "Quality of the served predictions on the latest W feedback rows (0..1; macro averages)",
        labels=["measure"],
    )
    for measure, value in sorted(window.quality.items()):
        quality.add_metric([measure], value)
    yield quality
    version_quality = GaugeMetricFamily(
        "ctloop_window_version_quality",
        "Quality of each model version on the rows it answered among the latest W (0..1)",
        labels=["measure", "version"],
    )
    for version, measures in sorted(window.version_quality.items()):
        for measure, value in sorted(measures.items()):
            version_quality.add_metric([measure, version], value)
    yield version_quality
    version_rows = GaugeMetricFamily(
        "ctloop_window_version_rows",
        "Rows of the latest W feedback rows that each model version answered",
        labels=["version"],
    )
    for version, rows in sorted(window.version_rows.items()):
        version_rows.add_metric([version], rows)
    yield version_rows


def _health_metrics(state: ExportedState, now: float) -> Iterator[Metric]:
    yield from _gauge(
        "ctloop_reporting_snapshot_timestamp_seconds",
        "When the latest snapshot was computed (Unix time)",
        state.snapshot_timestamp,
    )
    yield from _gauge(
        "ctloop_reporting_snapshot_age_seconds",
        "Seconds since the latest snapshot was computed",
        None if state.snapshot_timestamp is None else max(0.0, now - state.snapshot_timestamp),
    )
    yield from _gauge(
        "ctloop_reporting_last_success_timestamp_seconds",
        "Last check that left the dashboard up to date: a new snapshot or unchanged data",
        state.last_success,
    )
    yield from _gauge(
        "ctloop_reporting_last_failure_timestamp_seconds",
        "Last update that failed (Unix time)",
        state.last_failure,
    )
    yield from _gauge(
        "ctloop_reporting_last_update_ok",
        "1 if the last check succeeded, 0 if it failed",
        None if state.last_ok is None else float(state.last_ok),
    )
    yield from _gauge(
        "ctloop_reporting_update_duration_seconds",
        "How long the latest update took",
        state.update_seconds,
    )
    updates = CounterMetricFamily(
        "ctloop_reporting_updates", "Updates of the dashboard, by outcome", labels=["outcome"]
    )
    for outcome in OUTCOMES:
        updates.add_metric([outcome], state.updates.get(outcome, 0))
    yield updates


def serve_metrics(
    collector: SnapshotCollector, host: str, port: int
) -> tuple[WSGIServer, threading.Thread]:
    """Start the /metrics HTTP server in a daemon thread; returns (server, thread)."""
    registry = CollectorRegistry()
    registry.register(collector)
    return start_http_server(port, addr=host, registry=registry)
