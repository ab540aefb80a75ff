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
from ctloop.registry import ModelRegistry, RegistryError
from serving.metrics import MODEL_LOADS, set_model_version

log = logging.getLogger("serving.model")


class ModelStore:
    """Holds this worker's model and keeps it in step with the registry's current pointer."""

    def __init__(self, registry: ModelRegistry, poll_seconds: float) -> None:
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.model: Model | None = None
        self._seen: tuple[int, int] | None = None  # (mtime_ns, inode) of the pointer last read

    def load_current(self) -> Model | None:
        """Load the version the pointer names (blocking; used at startup and from a thread)."""
        self._seen = self._pointer_stamp()
        version = self.registry.current_version()
        if version is None:
            log.warning("no model is served yet in %s; waiting for one", self.registry.root)
            return None
        if self.model is not None and self.model.version == version:
            return self.model
        started = time.perf_counter()
        try:
            model = load_model(self.registry.load(version))
        except (RegistryError, OSError, ValueError) as exc:
            MODEL_LOADS.labels(outcome="refused").inc()
            log.error("refusing model %s: %s; still serving %s", version, exc, self.version)
            return self.model
        _warm_up(model)
        previous, self.model = self.version, model
        MODEL_LOADS.labels(outcome="loaded").inc()
        set_model_version(
            previous, model.version, model.manifest["metrics"]["holdout"].get("accuracy")
        )
        seconds = round(time.perf_counter() - started, 3)
        log.info(
            "model_loaded",
            extra={
                "event": "model_loaded",
                "version": model.version,
                "previous": previous,
                "seconds": seconds,
            },
        )
        return model

    @property
    def version(self) -> str | None:
        return self.model.version if self.model is not None else None

    async def watch(self) -> None:
        """Forever: when the pointer file changes, load what it names, off the event loop."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                if self._pointer_stamp() != self._seen:
                    await run_in_threadpool(self.load_current)
            except Exception:  # the watcher must survive anything and try again
                log.exception("model watcher error")

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
