"""Prometheus metrics, JSON logs and the request middleware.

With several uvicorn workers the counters live in prometheus_client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, set up by `python -m serving`), so /metrics answers for the whole
service whichever worker serves it. Retrain outcomes come from artifacts/retrains.jsonl at scrape
time, so they count every retrain, whoever ran it and across restarts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections import Counter as Tally
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY

from ctloop.logs import JsonLineWriter, configure_json_logging

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
MODEL_LOADS = Counter("ctloop_model_loads_total", "Model versions loaded by workers", ["outcome"])
MODEL_INFO = Gauge(
    "ctloop_model_info",
    "1 for the model version a worker serves",
    ["version"],
    multiprocess_mode="liveall",
)

ACCESS_LOG = "serving.request"
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def set_model_version(previous: str | None, current: str) -> None:
    if previous is not None:
        MODEL_INFO.labels(version=previous).set(0)
    MODEL_INFO.labels(version=current).set(1)


class RetrainCollector:
    """ctloop_retrains_total{decision} and the production row count, read at scrape time."""

    def __init__(self, read_log: Callable[[], list[dict]], rows: Callable[[], int]) -> None:
        self.read_log = read_log
        self.rows = rows

    def collect(self):
        decisions = Tally(entry.get("decision", "unknown") for entry in self.read_log())
        retrains = CounterMetricFamily(
            "ctloop_retrains", "Retrains by decision", labels=["decision"]
        )
        for decision in ("promoted", "rejected", "failed"):
            retrains.add_metric([decision], decisions.get(decision, 0))
        yield retrains
        yield GaugeMetricFamily(
            "ctloop_production_rows", "Rows in prod_data.csv", value=self.rows()
        )


def render_metrics(extra: RetrainCollector) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in list(REGISTRY._collector_to_names):  # this process's own metrics
            registry.register(collector)
    registry.register(extra)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_worker_dead() -> None:
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())


def configure_logging(level: str) -> None:
    configure_json_logging(level)
    logging.getLogger(ACCESS_LOG).setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the middleware logs every request


class BodyTooLargeError(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than the limit of {limit:,} bytes")
        self.limit = limit


class RequestMiddleware:
    """Request id, body size limit, latency histogram, request counter, one JSON log line.

    A plain ASGI middleware: Starlette's BaseHTTPMiddleware costs far more per request. The body
    limit is ours rather than FastAPI's `max_body_size` because Starlette's limiter answers an
    over-long Content-Length with a plain-text 413 that replaces the app's JSON error.
    """

    def __init__(self, app, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._latency: dict[tuple[str, str, int], object] = {}  # labelled children, looked up once
        self._access: JsonLineWriter | None = None  # made in the worker, after logging is set up

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        offered = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode(
            "latin-1"
        )
        request_id = offered if REQUEST_ID.match(offered) else secrets.token_hex(16)
        header = (b"x-request-id", request_id.encode())
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        try:
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await _too_large(send_with_id, self.max_body_bytes, request_id)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            path = route.path if route is not None else "unmatched"
            key = (path, scope["method"], status)
            child = self._latency.get(key)
            if child is None:
                child = self._latency[key] = LATENCY.labels(path, scope["method"], str(status))
            child.observe(elapsed)
            if self._access is None:
                self._access = JsonLineWriter(ACCESS_LOG)
            if self._access.enabled:
                self._access.info(
                    "request",
                    {
                        "event": "request",
                        "request_id": request_id,
                        "method": scope["method"],
                        "route": path,
                        "status": status,
                        "latency_ms": round(elapsed * 1000, 3),
                        "model_version": state.get("model_version"),
                    },
                )

    def _limited(self, receive):
        """Count body bytes as they arrive, for bodies sent without a Content-Length."""
        limit, received = self.max_body_bytes, 0

        async def receive_limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        return receive_limited


async def _too_large(send, limit: int, request_id: str) -> None:
    body = json.dumps(
        {
            "detail": f"the request body is larger than the limit of {limit:,} bytes",
            "error": "body_too_large",
            "request_id": request_id,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
