"""The model a worker serves: loaded once at startup, swapped when another version is promoted.

Each worker watches artifacts/current.json (one stat per MODEL_POLL_SECONDS). When the pointer
names another version, the worker loads and verifies it in a thread, warms it up, and then
replaces its reference in one assignment: requests already running finish on the model they
started with, new ones get the new model, none fails.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import numpy as np
from starlette.concurrency import run_in_threadpool

from ctloop.predict import Model, load_model
from ctloop.registry import CorruptPointerError, ModelRegistry, RegistryError
from serving.metrics import MODEL_LOADS, set_fallback, set_model_version

log = logging.getLogger("serving.model")


class ModelStore:
    """Holds this worker's model and keeps it in step with the registry's current pointer.

    When the pointer cannot be read, or names a version that is missing or does not verify, the
    worker serves the best version that does (`ModelRegistry.fallbacks`: the pointer's ancestors,
    then versions that passed the gate, never a rejected challenger) and says so in `fallback`
    (/model, /ready, the logs and ctloop_model_fallback); it looks again every
    RETRY_SECONDS until the pointer's own version loads.
    """

    RETRY_SECONDS = 10.0

    def __init__(self, registry: ModelRegistry, poll_seconds: float) -> None:
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.model: Model | None = None
        self.fallback: dict | None = None  # {"wanted", "serving", "reason"} while not as pointed
        self._seen: tuple[int, int] | None = None  # (mtime_ns, inode) of the pointer last read
        self._tried_at = 0.0

    def load_current(self) -> Model | None:
        """Load what the pointer names, or the best fallback (blocking: startup, or a thread)."""
        self._seen, self._tried_at = self._pointer_stamp(), time.monotonic()
        try:
            wanted, problem = self.registry.current_version(), None
        except CorruptPointerError as exc:
            wanted, problem = None, str(exc)
        if wanted is None and problem is None:
            if not self.registry.version_ids():
                log.warning("no model is served yet in %s; waiting for one", self.registry.root)
                return self.model
            problem = f"{self.registry.current_path} is missing although versions exist"
        if wanted is not None and self.version == wanted:
            self._set_fallback(None)
            return self.model
        reasons = [problem] if problem else []
        for version in ([wanted] if wanted else []) + self.registry.fallbacks(wanted):
            if version == self.version:
                self._set_fallback(self._fallback(wanted, version, reasons))
                return self.model
            try:
                model = load_model(self.registry.load(version))
            except (RegistryError, OSError, ValueError) as exc:
                MODEL_LOADS.labels(outcome="refused").inc()
                log.error("refusing model %s: %s", version, exc)
                reasons.append(str(exc))
                continue
            self._swap(model)
            self._set_fallback(
                None if version == wanted else self._fallback(wanted, version, reasons)
            )
            return model
        log.error("no model version loads; still serving %s: %s", self.version, "; ".join(reasons))
        if self.model is not None:
            self._set_fallback(self._fallback(wanted, self.version, reasons))
        return self.model

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

    def _swap(self, model: Model) -> None:
        started = time.perf_counter()
        _warm_up(model)
        previous, self.model = self.version, model
        MODEL_LOADS.labels(outcome="loaded").inc()
        set_model_version(
            previous, model.version, model.manifest["metrics"]["holdout"].get("accuracy")
        )
        log.info(
            "model_loaded",
            extra={
                "event": "model_loaded",
                "version": model.version,
                "previous": previous,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    def _fallback(self, wanted: str | None, serving: str | None, reasons: list[str]) -> dict:
        why = "; ".join(reasons) or f"{wanted} does not load"
        return {"wanted": wanted, "serving": serving, "reason": why}

    def _set_fallback(self, fallback: dict | None) -> None:
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
