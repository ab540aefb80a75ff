"""Progressive delivery in the serving workers: which model answers, the shadow, canary health.

- Canary: the challenger answers CANARY_SHARE of the clients, chosen by a hash of their
  X-Client-ID (of the request id when they send none), `ctloop.delivery.routed_to_challenger`:
  the same answer in every worker and after every restart. /feedback is routed the same way, so
  a client's feedback row is predicted and recorded by the version that answers that client.
- Shadow: SHADOW_SHARE of /predict requests (by their id) are also answered by the challenger,
  after the reply is sent, in batches (`ShadowQueue`: the reply never waits for it); its agreement
  with the champion and its inference time per image go to the metrics. It is scored later on
  the feedback rows (`ctloop.stage`).
- Canary health: every HEALTH_SECONDS each worker reads every worker's per-version request
  figures (prometheus multiprocess files), since the stage began, and rolls the canary back at
  once when `ctloop.delivery.health_verdict` says its error ratio or p99 latency degraded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import cast

import numpy as np
from fastapi import Request
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.concurrency import run_in_threadpool

from ctloop.config import CoreSettings
from ctloop.delivery import health_verdict, routed_to_challenger
from ctloop.predict import Model
from ctloop.registry import RegistryError
from ctloop.stage import StageReview, review_stage
from serving.deps import model_not_ready
from serving.metrics import MULTIPROCESS, SHADOW_LATENCY, SHADOW_PREDICTIONS, VERSION_LATENCY
from serving.model_store import ModelStore, Served
from serving_client.records import Delivery, LiveReview

log = logging.getLogger("serving.delivery")

HEALTH_SECONDS = 2.0


def routing_key(request: Request) -> str:
    """The key a canary split hashes: the client's X-Client-ID, else this request's id."""
    client = request.headers.get("x-client-id")
    return f"client:{client[:128]}" if client else f"request:{request.state.request_id}"


def answering_models(request: Request, shadow: bool = True) -> tuple[Model, Model | None]:
    """The model that answers this request, and the shadow to run beside it (if any)."""
    served: Served = request.app.state.models.served
    model = served.model
    if model is None:
        raise model_not_ready(request.app.state.models)
    stage, companion = served.stage, None
    if stage is not None and served.challenger is not None:
        if stage["stage"] == "canary":
            if routed_to_challenger(routing_key(request), stage["percent"]):
                model = served.challenger
        elif shadow and routed_to_challenger(request.state.request_id, stage["percent"]):
            companion = served.challenger
    request.state.model_version = model.version
    return model, companion


class ShadowQueue:
    """A worker's shadow work: the images of shadowed requests, answered by the shadow in
    batches once their replies have gone (within FLUSH_SECONDS, or at FLUSH_ROWS images), so
    that a shadow at 100 % costs the API one onnxruntime call and three metric updates per batch
    instead of per request."""

    FLUSH_SECONDS = 0.01
    FLUSH_ROWS = 64

    def __init__(self) -> None:
        self._pending: list[tuple[Model, bool, np.ndarray, np.ndarray, np.ndarray]] = []
        self._rows = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(
        self,
        shadow: Model,
        same_embedding: bool,
        labels: np.ndarray,
        embeddings: np.ndarray,
        pixels: np.ndarray,
    ) -> None:
        self._pending.append((shadow, same_embedding, labels, embeddings, pixels))
        self._rows += len(labels)
        if self._rows >= self.FLUSH_ROWS:
            if self._timer is not None:
                self._timer.cancel()
            asyncio.get_running_loop().call_soon(self.flush)
            self._timer = None
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        pending, self._pending, self._rows, self._timer = self._pending, [], 0, None
        groups: dict[tuple[int, bool], list] = {}
        for item in pending:
            groups.setdefault((id(item[0]), item[1]), []).append(item)
        for items in groups.values():
            shadow, same_embedding = items[0][0], items[0][1]
            labels = np.concatenate([item[2] for item in items])
            inputs = np.concatenate([item[3 if same_embedding else 4] for item in items])
            _run_shadow(shadow, same_embedding, labels, inputs)


SHADOWS = ShadowQueue()


def shadow_later(
    shadow: Model,
    same_embedding: bool,
    labels: np.ndarray,
    embeddings: np.ndarray,
    pixels: np.ndarray,
) -> None:
    """Have the shadow answer the same images, after this request's reply has been sent."""
    SHADOWS.add(shadow, same_embedding, labels, embeddings, pixels)


def _run_shadow(
    shadow: Model, same_embedding: bool, labels: np.ndarray, inputs: np.ndarray
) -> None:
    """The shadow on a batch: `inputs` are the champion's embeddings when the two share their
    embedding (the shadow's head alone), else the preprocessed pixels."""
    try:
        started = time.perf_counter()
        if same_embedding:
            theirs = shadow.classifier(inputs)[0]
        else:
            theirs = shadow.predict_pixels(inputs)[1]
        per_image = (time.perf_counter() - started) / len(labels)
        SHADOW_LATENCY.labels(shadow.version).observe(per_image)
        agree = int(np.sum(theirs == labels))
        if agree:
            SHADOW_PREDICTIONS.labels(shadow.version, "agree").inc(agree)
        if len(labels) - agree:
            SHADOW_PREDICTIONS.labels(shadow.version, "disagree").inc(len(labels) - agree)
    except Exception:  # the shadow must never hurt serving
        log.exception("shadow %s failed", shadow.version)


# -- the live comparison -------------------------------------------------------------------------


def live_review(settings: CoreSettings, store: ModelStore, apply: bool) -> StageReview | None:
    """The stage judged on its feedback rows (blocking: run in a thread); with `apply`, the
    decision is carried out and this worker follows it at once."""
    served = store.served
    if served.stage is None or served.challenger is None:
        return None
    classifier = served.challenger.classifier if served.same_embedding else None
    review = review_stage(settings, store.registry, challenger=classifier, apply=apply)
    if review is not None and review.applied:
        store.load_current()
    return review


def review_after_feedback(settings: CoreSettings, store: ModelStore, rows: int) -> None:
    """After the feedback row numbered `rows`: judge the stage once it can have enough rows."""
    stage = store.served.stage
    if stage is None:
        return
    needed = settings.canary_min_rows if stage["stage"] == "canary" else settings.shadow_min_rows
    if rows - int(stage.get("from_rows", 0)) < needed:
        return
    try:
        live_review(settings, store, apply=True)
    except Exception:  # judging must never fail a feedback that is saved already
        log.exception("reviewing the stage failed")


def delivery_view(settings: CoreSettings, store: ModelStore) -> Delivery:
    """/model's `delivery`: the strategy, the stage, the split and the live comparison."""
    served = store.served
    view: Delivery = {"strategy": settings.promotion_strategy, "stage": served.stage}
    if served.stage is None or served.model is None:
        return view
    percent = served.stage["percent"]
    # The share of requests each version answers (the shadow's answers never reach clients).
    if served.stage["stage"] == "canary":
        view["split"] = {served.model.version: 100 - percent, served.stage["version"]: percent}
    else:
        view["split"] = {served.model.version: 100.0}
        view["shadowed_percent"] = percent
    review = live_review(settings, store, apply=False)
    # The comparison's record (ctloop.stage), checked against LiveReview when /model is built.
    view["live"] = cast(LiveReview, review.to_dict()) if review is not None else None
    return view


class StageCollector:
    """The live comparison of the stage as gauges, computed at scrape time (none without one)."""

    def __init__(self, settings: CoreSettings, store: ModelStore) -> None:
        self.settings, self.store = settings, store

    def collect(self) -> Iterator[Metric]:
        try:
            review = live_review(self.settings, self.store, apply=False)
        except Exception:  # a scrape must not fail for it
            log.exception("the live comparison failed")
            review = None
        accuracy = GaugeMetricFamily(
            "ctloop_stage_live_accuracy",
            "During a stage: live accuracy on the feedback rows since it began, by version and "
            "role (champion, challenger)",
            labels=["version", "role"],
        )
        rows = GaugeMetricFamily(
            "ctloop_stage_live_rows",
            "During a stage: the feedback rows each version is judged on",
            labels=["version", "role"],
        )
        if review is not None:
            live = review.comparison
            for role, version, value, count in (
                ("champion", live.champion, live.champion_accuracy, live.champion_rows),
                ("challenger", live.challenger, live.challenger_accuracy, live.challenger_rows),
            ):
                if value is not None:
                    accuracy.add_metric([version, role], value)
                rows.add_metric([version, role], count)
        yield accuracy
        yield rows


# -- canary health -------------------------------------------------------------------------------


def version_figures() -> dict[str, dict]:
    """Every worker's /predict figures by version: {version: {"buckets": {le: n}, "requests",
    "errors"}}, counted since each worker started."""
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        metrics = registry.collect()
    else:
        metrics = VERSION_LATENCY.collect()
    figures: dict[str, dict] = {}
    for metric in metrics:
        if metric.name != "ctloop_version_request_duration_seconds":
            continue
        for sample in metric.samples:
            version = sample.labels["version"]  # the histogram is labelled by version
            entry = figures.setdefault(version, {"buckets": {}, "requests": 0.0, "errors": 0.0})
            if sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                entry["buckets"][le] = entry["buckets"].get(le, 0.0) + sample.value
            elif sample.name.endswith("_count"):
                entry["requests"] += sample.value
                if sample.labels.get("outcome") == "error":
                    entry["errors"] += sample.value
    return figures


def since(now: dict | None, then: dict | None) -> dict:
    """The figures between two readings, with their p99 (the upper bound of its bucket)."""
    now = now or {"buckets": {}, "requests": 0.0, "errors": 0.0}
    then = then or {"buckets": {}, "requests": 0.0, "errors": 0.0}
    buckets = {le: n - then["buckets"].get(le, 0.0) for le, n in sorted(now["buckets"].items())}
    requests = now["requests"] - then["requests"]
    p99 = None
    if requests > 0:
        p99 = next((le for le, n in buckets.items() if n >= 0.99 * requests), None)
    return {"requests": requests, "errors": now["errors"] - then["errors"], "p99_seconds": p99}


class CanaryHealth:
    """Each worker's watch over the canary's health (errors, p99), beside the champion's."""

    def __init__(self, settings: CoreSettings, store: ModelStore) -> None:
        self.settings, self.store = settings, store
        self._baseline: tuple[str, dict] | None = None  # (stage since, figures at its start)

    def check(self) -> str | None:
        """Roll the canary back if its health degraded (blocking); the reason, if it did."""
        served = self.store.served
        stage = served.stage
        champion_model = served.model
        if (
            stage is None
            or stage["stage"] != "canary"
            or served.challenger is None
            or champion_model is None
        ):
            self._baseline = None
            return None
        figures = version_figures()
        key = f"{stage['version']}@{stage['since']}"
        if self._baseline is None or self._baseline[0] != key:
            self._baseline = (key, figures)
            return None
        then = self._baseline[1]
        champion, challenger = champion_model.version, stage["version"]
        # The challenger's figures are all its stage's (its version answers nothing before); the
        # champion's count from this worker's first look at the stage.
        verdict = health_verdict(
            since(figures.get(challenger), None),
            since(figures.get(champion), then.get(champion)),
            self.settings.canary_error_margin,
            self.settings.canary_latency_factor,
            self.settings.canary_min_requests,
        )
        if verdict is None:
            return None
        reason = f"canary health: {verdict}"
        with contextlib.suppress(RegistryError):  # another worker may have acted first
            self.store.registry.end_stage(False, reason, version=challenger)
            log.warning("stage_ended", extra={"event": "stage_ended", "reason": reason})
        self.store.load_current()
        return reason

    async def run(self) -> None:
        while True:
            try:
                if self.store.served.stage is not None or self._baseline is not None:
                    await run_in_threadpool(self.check)
            except Exception:  # the watch must survive anything and look again
                log.exception("canary health check failed")
            await asyncio.sleep(HEALTH_SECONDS)
