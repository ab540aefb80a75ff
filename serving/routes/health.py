"""GET /health (the process answers), GET /ready (a model is loaded), GET /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from serving.metrics import render_metrics

router = APIRouter(tags=["operations"])


@router.get("/health", summary="The process is alive")
async def health() -> dict:
    return {"status": "ok"}


@router.get("/ready", summary="A model is loaded and answering", responses={503: {}})
async def ready(request: Request) -> JSONResponse:
    model = request.app.state.models.model
    if model is None:
        return JSONResponse(
            {"status": "waiting for a model", "model_version": None}, status_code=503
        )
    return JSONResponse({"status": "ready", "model_version": model.version})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    body, content_type = await run_in_threadpool(
        render_metrics, request.app.state.metrics_collector
    )
    return Response(body, media_type=content_type)
