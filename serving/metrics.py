"""Prometheus metrics of the serving API.

With several uvicorn workers the counters live in prometheus_client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, set up by `python -m serving`), so /metrics answers for the whole
service whichever worker serves it. Retrain outcomes and the production row count come from the
files at scrape time, so they count every retrain, whoever ran it and across restarts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from ctloop.prod_data import FeedbackStore
from ctloop.retrain_log import DECISIONS, RetrainLog
from ctloop.schedule import RetrainStatus
from serving_client.records import Stage

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# One histogram: its _count series is the number of requests by route, method and status (a
# separate counter would cost another locked write per request in multiprocess mode).
LATENCY = Histogram(
    "ctloop_http_request_duration_seconds",
    "Time from the first byte of a request to the last byte of its response (the _count series "
    "counts requests)",
    ["route", "method", "status"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
PREDICTIONS = Counter("ctloop_predictions_total", "Predictions served, by class", ["label"])
FEEDBACK_ROWS = Counter("ctloop_feedback_rows_total", "Rows appended to prod_data.csv")
FEEDBACK_WRITE_FAILURES = Counter(
    "ctloop_feedback_write_failures_total",
    "Feedback refused because its row could not be written: no_room (a full disk or quota, a "
    "file-size limit: 507) or unavailable (a damaged header, a file that cannot be opened: 503)",
    ["reason"],
)
DECODES_REFUSED = Counter(
    "ctloop_decodes_refused_total",
    "Large images refused with 503 because the worker's SERVING_DECODE_BUDGET_PIXELS stayed full "
    "for SERVING_DECODE_WAIT_SECONDS",
)
MODEL_LOADS = Counter("ctloop_model_loads_total", "Model versions loaded by workers", ["outcome"])
MODEL_INFO = Gauge(
    "ctloop_model_info",
    "1 for the model version a worker serves",
    ["version"],
    multiprocess_mode="liveall",
)
MODEL_HOLDOUT_ACCURACY = Gauge(
    "ctloop_model_holdout_accuracy",
    "Held-out accuracy recorded in the manifest of the version a worker serves",
    ["version"],
    multiprocess_mode="liveall",
)

MODEL_FALLBACK = Gauge(
    "ctloop_model_fallback",
    "1 while a worker serves another version than the registry pointer names (see /model)",
    multiprocess_mode="liveall",
)

# Progressive delivery: each version's own figures, so that a challenger on stage can be watched
# beside the champion (requests and server errors by version: the _count series by outcome).
VERSION_LATENCY = Histogram(
    "ctloop_version_request_duration_seconds",
    "Time of each /predict request by the model version that answered it, and whether it "
    "succeeded (outcome ok) or failed on the server (error); the _count series counts requests",
    ["version", "outcome"],
    buckets=(0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
             0.25, 0.5, 1.0, 2.5),
)  # fmt: skip
SHADOW_PREDICTIONS = Counter(
    "ctloop_shadow_predictions_total",
    "Images a shadow challenger answered beside the champion, by whether it agreed",
    ["version", "agreement"],
)
SHADOW_LATENCY = Histogram(
    "ctloop_shadow_inference_seconds",
    "Inference time per image of a shadow challenger (its batches, run after the replies)",
    ["version"],
    buckets=(0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05),
)
STAGE_INFO = Gauge(
    "ctloop_stage_percent",
    "The challenger on stage: its share of requests in percent (0 once its stage ended)",
    ["version", "stage"],
    multiprocess_mode="liveall",
)


def set_stage(previous: Stage | None, current: Stage | None) -> None:
    if previous is not None:
        STAGE_INFO.labels(previous["version"], previous["stage"]).set(0)
    if current is not None:
        STAGE_INFO.labels(current["version"], current["stage"]).set(current["percent"])


def set_fallback(active: bool) -> None:
    MODEL_FALLBACK.set(1 if active else 0)


def set_model_version(previous: str | None, current: str, holdout_accuracy: float | None) -> None:
    if previous is not None and previous != current:
        MODEL_INFO.labels(version=previous).set(0)
        MODEL_HOLDOUT_ACCURACY.remove(previous)
    MODEL_INFO.labels(version=current).set(1)
    if holdout_accuracy is not None:
        MODEL_HOLDOUT_ACCURACY.labels(version=current).set(holdout_accuracy)


class RetrainCollector:
    """Retrain decisions, streaks, backlog and production rows, read from the files at scrape."""

    def __init__(self, ledger: RetrainLog, status: Callable[[], RetrainStatus]) -> None:
        self.ledger = ledger
        self.status = status

    def collect(self) -> Iterator[Metric]:
        decisions = self.ledger.decision_counts()
        retrains = CounterMetricFamily(
            "ctloop_retrains", "Retrain decisions, by decision", labels=["decision"]
        )
        for decision in DECISIONS:
            retrains.add_metric([decision], decisions.get(decision, 0))
        yield retrains
        yield GaugeMetricFamily(
            "ctloop_retrain_consecutive_rejections",
            "Latest retrain decisions in a row that the gate rejected",
            value=self.ledger.streak("rejected"),
        )
        yield GaugeMetricFamily(
            "ctloop_retrain_consecutive_failures",
            "Latest retrain decisions in a row that failed",
            value=self.ledger.streak("failed"),
        )
        status = self.status()
        yield GaugeMetricFamily(
            "ctloop_retrain_backlog", "Retrain triggers due, not decided yet", value=status.backlog
        )
        yield GaugeMetricFamily(
            "ctloop_production_rows", "Complete rows in prod_data.csv", value=status.rows
        )


class StorageCollector:
    """Whether feedback can be saved, skipped lines of prod_data.csv and the room left, as this
    worker sees them at scrape (statvfs: cheap)."""

    def __init__(self, prod_data: FeedbackStore, folders: dict[str, Path]) -> None:
        self.prod_data = prod_data
        self.folders = folders

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "ctloop_feedback_writable",
            "1 while feedback rows can be saved, 0 while /feedback refuses them (507 no room, 503 "
            "a damaged file: /ready says why)",
            value=0 if self.prod_data.problem else 1,
        )
        yield GaugeMetricFamily(
            "ctloop_prod_data_skipped_lines",
            "Lines of prod_data.csv that are not valid rows: every reader skips them; each is "
            "recorded in prod_data.skipped.jsonl",
            value=self.prod_data.skipped_lines,
        )
        free = GaugeMetricFamily(
            "ctloop_disk_free_bytes",
            "Bytes an unprivileged writer can still use in each folder the stack writes",
            labels=["folder"],
        )
        for name, path in self.folders.items():
            try:
                status = os.statvfs(path)
            except OSError:
                continue
            free.add_metric([name], status.f_bavail * status.f_frsize)
        yield free


def render_metrics(*extra: Collector) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in list(REGISTRY._collector_to_names):  # this process's own metrics
            registry.register(collector)
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_worker_dead() -> None:
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
