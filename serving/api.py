"""The serving API (the workshop's serving/api.py): `uvicorn serving.api:app`, or
`python -m serving` for the production launcher (workers, multiprocess metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from ctloop.credentials import resolve
from ctloop.embed import EmbeddingError, load_embedding
from ctloop.prod_data import ProductionDataError, open_production
from ctloop.registry import ModelRegistry
from ctloop.retrain_log import open_ledger
from serving.delivery import CanaryHealth, StageCollector
from serving.docs import install_docs
from serving.errors import install_error_handlers
from serving.logs import configure_logging
from serving.metrics import RetrainCollector, StorageCollector, mark_worker_dead
from serving.middleware import RequestMiddleware
from serving.model_store import ModelStore
from serving.ratelimit import ClientRateLimit
from serving.retraining import Retraining, TrainerLauncher
from serving.routes import feedback, health, model, predict, samples
from serving.settings import ServingSettings, get_serving_settings
from serving_client.contract import ErrorResponse

log = logging.getLogger("serving")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model once, check prod_data.csv, start the trainer launcher, watch promotions."""
    settings: ServingSettings = app.state.settings
    models = ModelStore(ModelRegistry(settings.artifacts_dir), settings.model_poll_seconds)
    await run_in_threadpool(models.load_current)
    prod_data = open_production(settings, _n_components(settings))
    with contextlib.suppress(ProductionDataError):  # logged and kept: /feedback answers 503
        await run_in_threadpool(prod_data.repair)
    retraining = Retraining(
        settings,
        prod_data,
        open_ledger(settings),
        registry_damaged=lambda: models.model is None or models.fallback is not None,
    )
    launcher = TrainerLauncher(retraining.needs_trainer, settings.trainer_check_seconds)
    app.state.models, app.state.retraining, app.state.trainer = models, retraining, launcher
    app.state.metrics_collectors = (
        RetrainCollector(retraining.ledger, retraining.status),
        StageCollector(settings, models),
        StorageCollector(
            prod_data, {"data": settings.data_dir, "artifacts": settings.artifacts_dir}
        ),
    )
    launcher.start()
    launcher.poke()  # retrains that became due while the service was down
    watcher = asyncio.create_task(models.watch())
    health = asyncio.create_task(CanaryHealth(settings, models).run())
    # Everything loaded so far (libraries, the model) lives as long as the worker: move it out of
    # the garbage collector's way, so that its full collections stop scanning it mid-request.
    gc.freeze()
    try:
        yield
    finally:
        for task in (watcher, health):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await launcher.stop()
        mark_worker_dead()


def _n_components(settings: ServingSettings) -> int:
    try:
        return int(load_embedding(settings.embedding_dir).info["n_components"])
    except EmbeddingError:  # nothing built yet: PCA_COMPONENTS, unless init is to choose it
        components = settings.pca_components
        return components if isinstance(components, int) else 0


def create_app(settings: ServingSettings | None = None) -> FastAPI:
    settings = settings or get_serving_settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title="ctloop serving API",
        version="1.0",
        summary="Image classification with feedback, retraining and hot-swapped models",
        lifespan=lifespan,
        # Metrics go to Prometheus (/metrics); FastAPI's OpenTelemetry hooks cost a provider
        # lookup per request when nothing is configured. Set them here to trace with OTel.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        responses={500: {"model": ErrorResponse, "description": "The server failed"}},
        docs_url=None,  # /docs is served below, from files the API holds
        redoc_url=None,
        # No 307 from /model/rollback/ to /model/rollback: Starlette's redirect writes the
        # request's Host header into `location`, a page a client could be sent to. A path that is
        # not a route is a 404 JSON error, like any other.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.api_token = resolve(settings.api_token, settings.secrets_dir, "api_token")
    app.state.feedback_limit = ClientRateLimit(settings.feedback_rate_limit)
    install_docs(app)
    install_error_handlers(app)
    for router in (predict.router, feedback.router, model.router, samples.router, health.router):
        app.include_router(router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        )
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_body_bytes)
    return app


def __getattr__(name: str) -> FastAPI:
    """`serving.api:app` (what uvicorn loads), made on first use: importing this module to call
    `create_app(settings)` (the in-process tests) reads no environment and writes no secret."""
    if name == "app":
        globals()["app"] = built = create_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
