"""GET /health (the process answers), GET /ready (a model is loaded), GET /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State

from serving.metrics import render_metrics

router = APIRouter(tags=["operations"])


@router.get("/health", summary="The process is alive")
async def health() -> dict:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="A model is loaded and answering predictions",
    responses={503: {"description": "No model is loaded yet"}},
)
async def ready(request: Request) -> JSONResponse:
    """200 while /predict can answer, with `problems` naming anything degraded (a fallback model,
    feedback that cannot be saved); 503 until a model is loaded."""
    state = request.app.state
    model = state.models.model
    problems = service_problems(state)
    if model is None:
        problems.insert(0, state.models.unavailable_reason())
        body = {"status": "no model loaded", "model_version": None, "problems": problems}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "10"})
    status = "degraded" if problems else "ready"
    return JSONResponse({"status": status, "model_version": model.version, "problems": problems})


def service_problems(state: State) -> list[str]:
    """What works less than it should, in words an operator can act on."""
    problems = []
    fallback = state.models.fallback
    if fallback is not None:
        problems.append(
            f"serving {fallback['serving']} instead of {fallback['wanted'] or 'the pointer'}: "
            f"{fallback['reason']}"
        )
    feedback = state.retraining.prod_data.problem
    if feedback is not None:
        problems.append(f"feedback cannot be saved: {feedback}")
    return problems


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    body, content_type = await run_in_threadpool(
        render_metrics, *request.app.state.metrics_collectors
    )
    return Response(body, media_type=content_type)
