"""The models a worker serves: loaded once at startup, swapped when the pointer moves.

Each worker watches artifacts/current.json (one stat per SERVING_MODEL_POLL_SECONDS). When the
pointer names another version, the worker loads and verifies it in a thread, warms it up, and then
replaces its reference in one assignment: requests already running finish on the model they
started with, new ones get the new model, none fails. During a shadow or canary stage the
challenger the pointer names is held beside the champion, both published in one assignment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from ctloop.media import warm_up
from ctloop.predict import Model, load_model
from ctloop.registry import CorruptPointerError, ModelRegistry, RegistryError
from serving.metrics import MODEL_LOADS, set_fallback, set_model_version, set_stage
from serving_client.records import Fallback, Stage

log = logging.getLogger("serving.model")


@dataclass(frozen=True)
class Served:
    """What a worker serves at one instant: the champion, and the challenger on stage with the
    pointer's stage record. Replaced whole in one assignment: a request reads it once and never
    sees a champion of one pointer with a challenger of another."""

    model: Model | None
    challenger: Model | None = None
    stage: Stage | None = None  # the pointer's, while the challenger is served
    same_embedding: bool = False  # the challenger reads the champion's embedding


class ModelStore:
    """Holds this worker's models and keeps them in step with the registry's current pointer.

    When the pointer cannot be read, or names a version that is missing or does not verify, the
    worker serves the best version that does (`ModelRegistry.fallbacks`: the pointer's ancestors,
    then versions that passed the gate, never a rejected challenger) and says so in `fallback`
    (/model, /ready, the logs and ctloop_model_fallback); it looks again every
    RETRY_SECONDS until the pointer's own version loads. While it falls back, no challenger is
    served. A challenger on stage that does not load is taken off stage (rolled back, with the
    reason): a worker never serves a mix the pointer does not name.
    """

    RETRY_SECONDS = 10.0

    def __init__(self, registry: ModelRegistry, poll_seconds: float) -> None:
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.served = Served(None)
        self.fallback: Fallback | None = None  # while the pointer's version is not served
        self.unavailable: str | None = None  # why nothing is served, while nothing is
        self._seen: tuple[int, int] | None = None  # (mtime_ns, inode) of the pointer last read
        self._tried_at = 0.0

    @property
    def model(self) -> Model | None:
        """The champion."""
        return self.served.model

    def load_current(self) -> Model | None:
        """Load what the pointer names, or the best fallback (blocking: startup, or a thread)."""
        self._seen, self._tried_at = self._pointer_stamp(), time.monotonic()
        try:
            pointer, problem = self.registry.current_pointer(), None
        except CorruptPointerError as exc:
            pointer, problem = None, str(exc)
        wanted = pointer["version"] if pointer else None
        if wanted is None and problem is None:
            if not self.registry.version_ids():
                log.warning("no model is served yet in %s; waiting for one", self.registry.root)
                if self.model is None:
                    self.unavailable = f"no model version exists yet in {self.registry.root}"
                return self.model
            problem = f"{self.registry.current_path} is missing although versions exist"
        champion, fallback = self._champion(wanted, problem)
        if champion is None:
            return None
        self.unavailable = None
        stage = pointer.get("stage") if pointer and fallback is None else None
        challenger = self._challenger(stage, champion)
        self._publish(champion, challenger, stage if challenger is not None else None)
        self._set_fallback(fallback)
        return champion

    def _champion(
        self, wanted: str | None, problem: str | None
    ) -> tuple[Model | None, Fallback | None]:
        """The champion to serve and, unless it is the pointer's, why not (the fallback)."""
        reasons = [problem] if problem else []
        for version in self._candidates(wanted):
            model = self._known(version)
            if model is None:
                try:
                    model = self._load(version)
                except (RegistryError, OSError, ValueError) as exc:
                    MODEL_LOADS.labels(outcome="refused").inc()
                    log.error("refusing model %s: %s", version, exc)
                    reasons.append(str(exc))
                    continue
            fallback = None if version == wanted else self._fallback(wanted, version, reasons)
            return model, fallback
        log.error("no model version loads; still serving %s: %s", self.version, "; ".join(reasons))
        if self.model is not None:
            return self.model, self._fallback(wanted, self.version, reasons)
        self.unavailable = "no model version verifies: " + "; ".join(reasons)
        return None, None

    def _candidates(self, wanted: str | None) -> Iterator[str]:
        """The pointer's version, then (only if it does not load) the fallbacks."""
        if wanted:
            yield wanted
        yield from self.registry.fallbacks(wanted)

    def _challenger(self, stage: Stage | None, champion: Model) -> Model | None:
        """The challenger the stage names, loaded; a stage whose challenger does not load is
        ended (rolled back) so that no worker serves part of it."""
        if stage is None or stage["version"] == champion.version:
            return None
        model = self._known(stage["version"])
        if model is not None:
            return model
        try:
            return self._load(stage["version"])
        except (RegistryError, OSError, ValueError) as exc:
            MODEL_LOADS.labels(outcome="refused").inc()
            reason = f"{stage['stage']} {stage['version']} does not load in the API: {exc}"
            log.error("stage_aborted", extra={"event": "stage_aborted", "reason": reason})
            with contextlib.suppress(RegistryError):  # another worker may have ended it first
                self.registry.end_stage(False, reason, version=stage["version"])
            return None

    def _known(self, version: str) -> Model | None:
        """A version this worker holds already (a promoted challenger is not loaded again)."""
        for model in (self.served.model, self.served.challenger):
            if model is not None and model.version == version:
                return model
        return None

    def _load(self, version: str) -> Model:
        model = load_model(self.registry.load(version))
        _warm_up(model)
        MODEL_LOADS.labels(outcome="loaded").inc()
        return model

    def unavailable_reason(self) -> str:
        """Why this worker serves nothing (only while it does not), and what happens next."""
        return (
            f"no model is loaded: {self.unavailable or 'the first one is being loaded'}. The "
            "trainer builds a first model from ref_data.csv by itself (feedback rows are kept); "
            "`python -m ctloop init` does the same by hand"
        )

    @property
    def version(self) -> str | None:
        return self.model.version if self.model is not None else None

    async def watch(self) -> None:
        """Forever: when the pointer file changes (or, while falling back, every RETRY_SECONDS),
        load what it names, off the event loop."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                retry = self.fallback is not None and (
                    time.monotonic() - self._tried_at >= self.RETRY_SECONDS
                )
                if retry or self._pointer_stamp() != self._seen:
                    await run_in_threadpool(self.load_current)
            except Exception:  # the watcher must survive anything and try again
                log.exception("model watcher error")

    def _publish(self, model: Model, challenger: Model | None, stage: Stage | None) -> None:
        """Serve these from the next request on, in one assignment."""
        before = self.served
        same = challenger is not None and (
            challenger.manifest["embedding"]["sha256"] == model.manifest["embedding"]["sha256"]
        )
        self.served = Served(model, challenger, stage, same)
        if before.model is None or before.model.version != model.version:
            set_model_version(
                before.model.version if before.model else None,
                model.version,
                model.manifest["metrics"]["holdout"].get("accuracy"),
            )
            log.info(
                "model_loaded",
                extra={"event": "model_loaded", "version": model.version,
                       "previous": before.model.version if before.model else None},
            )  # fmt: skip
        if before.stage != stage:
            set_stage(before.stage, stage)
            log.info("stage_served", extra={"event": "stage_served", "stage": stage})

    def _fallback(self, wanted: str | None, serving: str | None, reasons: list[str]) -> Fallback:
        why = "; ".join(reasons) or f"{wanted} does not load"
        return {"wanted": wanted, "serving": serving, "reason": why}

    def _set_fallback(self, fallback: Fallback | None) -> None:
        if fallback is not None and fallback != self.fallback:
            log.error("model_fallback", extra={"event": "model_fallback", **fallback})
        self.fallback = fallback
        set_fallback(fallback is not None)

    def _pointer_stamp(self) -> tuple[int, int] | None:
        try:
            status = os.stat(self.registry.current_path)
        except FileNotFoundError:
            return None
        return status.st_mtime_ns, status.st_ino


def _warm_up(model: Model) -> None:
    """First runs allocate onnxruntime's buffers: do them before real requests arrive."""
    pixels = np.zeros((1, model.image_graph.n_pixels), dtype=np.float32)
    for _ in range(3):
        model.predict_pixels(pixels)
    warm_up(model.spec)  # the preprocessing's own first run (a sound's: scipy's filters)
