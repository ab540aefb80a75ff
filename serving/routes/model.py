"""GET /model, GET /model/versions, POST /model/rollback, /model/stage/{promote,abort} (admin)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import cast

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ctloop.audio import AudioSpec
from ctloop.gate import RULE
from ctloop.predict import Model
from ctloop.registry import RegistryError
from serving.bodies import json_request_body
from serving.delivery import delivery_view
from serving.deps import (
    ModelDep,
    ModelStoreDep,
    RegistryDep,
    RetrainingDep,
    RollbackBody,
    SettingsDep,
    StageBody,
    TokenDep,
)
from serving.errors import ApiError, Responses
from serving.model_store import ModelStore
from serving.routes.health import service_problems
from serving_client.contract import (
    ErrorResponse,
    ModelInfo,
    Preprocessing,
    RollbackRequest,
    RollbackResponse,
    StageRequest,
    StageResponse,
    VersionSummary,
)
from serving_client.records import RetrainDecision

router = APIRouter(tags=["model"])

# The admin routes' optional JSON body (read after the token check: serving.deps.json_body).
BODY_ERRORS: Responses = {
    415: {"model": ErrorResponse, "description": "The body is not JSON"},
    422: {"model": ErrorResponse, "description": "The body is not valid JSON, or not valid"},
}


@router.get("/model", response_model=ModelInfo, summary="The served model and the retrain state")
async def model_info(
    request: Request, model: ModelDep, settings: SettingsDep, retraining: RetrainingDep
) -> ModelInfo:
    status = await run_in_threadpool(retraining.status)
    # The ledger's line (ctloop.retrain_log), checked against RetrainDecision by ModelInfo.
    last = cast("RetrainDecision | None", await run_in_threadpool(retraining.ledger.last_decision))
    manifest = model.manifest
    return ModelInfo(
        version=model.version,
        created_at=manifest["created_at"],
        parent=manifest["parent"],
        classes=model.classes,
        dataset=dataset_name(manifest),
        preprocessing=model_preprocessing(model),
        metrics=manifest["metrics"],
        training=manifest["training"],
        retrain_every=settings.retrain_every,
        promotion_policy=settings.promotion_policy,
        gate_rule=RULE,
        production_rows=status.rows,
        rows_since_last_retrain=status.rows_since_last_retrain,
        rows_until_retrain=status.rows_until_next,
        retrain_backlog=status.backlog,
        last_retrain=last,
        fallback=request.app.state.models.fallback,
        problems=service_problems(request.app.state),
        delivery=await run_in_threadpool(delivery_view, settings, request.app.state.models),
    )


def dataset_name(manifest: dict) -> str | None:
    """'digits', or the DATASET folder's own name (not its path on this server)."""
    recorded = (manifest.get("embedding") or {}).get("dataset")
    if not isinstance(recorded, str):
        return None
    return PurePosixPath(recorded).name or None


def model_preprocessing(model: Model) -> Preprocessing:
    """What the model reads, from the spec its manifest recorded (loaded with the model)."""
    spec = model.spec
    if isinstance(spec, AudioSpec):
        return Preprocessing(
            medium=spec.medium,
            framing="log-mel",
            size=spec.n_mels,
            columns=spec.frames,
            channels=1,
            sample_rate=spec.sample_rate,
            seconds=spec.seconds,
        )
    return Preprocessing(framing=spec.framing, size=spec.size, channels=spec.channels)


@router.get(
    "/model/versions",
    response_model=list[VersionSummary],
    summary="Every registered version, its gate scores and decision",
)
async def model_versions(registry: RegistryDep) -> list[VersionSummary]:
    manifests = await run_in_threadpool(registry.list_versions)
    return [version_summary(m) for m in manifests]


def version_summary(manifest: dict) -> VersionSummary:
    training, retrain = manifest["training"], manifest.get("retrain") or {}
    return VersionSummary(
        version=manifest["version"],
        created_at=manifest["created_at"],
        parent=manifest["parent"],
        current=manifest["current"],
        training_rows=training["rows"],
        mode=training.get("mode"),
        mode_reason=training.get("mode_reason"),
        base_version=training.get("base_version"),
        production_window=training.get("window"),
        seconds=training.get("seconds"),
        holdout_accuracy=manifest["metrics"]["holdout"].get("accuracy"),
        holdout_macro_f1=manifest["metrics"]["holdout"].get("macro_f1"),
        trigger_rows=retrain.get("trigger_rows"),
        trigger_reasons=retrain.get("reasons"),
        gate=manifest.get("gate"),
        stages=manifest.get("stages", []),
    )


@router.post(
    "/model/rollback",
    response_model=RollbackResponse,
    dependencies=[TokenDep],
    responses={
        401: {"model": ErrorResponse, "description": "API token required"},
        409: {"model": ErrorResponse, "description": "Nothing to roll back to"},
        404: {"model": ErrorResponse, "description": "Unknown version"},
        **BODY_ERRORS,
    },
    summary="Serve the current version's parent, or a named version",
    openapi_extra=json_request_body(RollbackRequest),
)
async def rollback(
    request: Request, registry: RegistryDep, models: ModelStoreDep, body: RollbackBody
) -> RollbackResponse:
    """Moves the registry pointer; every worker switches to it within SERVING_MODEL_POLL_SECONDS
    (this one before it answers). With an unreadable pointer, naming a version repairs it."""
    try:
        previous = registry.current_version()
    except RegistryError:
        previous = None
    target = body.version if body else None
    if target is not None and target not in registry.version_ids():
        raise ApiError(404, "unknown_version", f"there is no model version {target!r}")
    try:
        version = await run_in_threadpool(registry.rollback, target)
    except RegistryError as exc:
        raise ApiError(409, "cannot_roll_back", str(exc)) from exc
    await run_in_threadpool(models.load_current)
    request.state.model_version = version
    return RollbackResponse(version=version, previous=previous)


STAGE_ERRORS: Responses = {
    401: {"model": ErrorResponse, "description": "API token required"},
    409: {"model": ErrorResponse, "description": "No challenger (or another one) is on stage"},
    **BODY_ERRORS,
}


@router.post(
    "/model/stage/promote",
    response_model=StageResponse,
    dependencies=[TokenDep],
    responses=STAGE_ERRORS,
    summary="Promote the challenger on stage (shadow or canary) now, by hand",
    openapi_extra=json_request_body(StageRequest),
)
async def promote_stage(request: Request, models: ModelStoreDep, body: StageBody) -> StageResponse:
    """The challenger serves everyone from now on; the champion is retired. Recorded in
    history.jsonl with the reason; every worker follows within SERVING_MODEL_POLL_SECONDS."""
    return await _end_stage(request, models, body, promote=True)


@router.post(
    "/model/stage/abort",
    response_model=StageResponse,
    dependencies=[TokenDep],
    responses=STAGE_ERRORS,
    summary="Roll the challenger on stage (shadow or canary) back now, by hand",
    openapi_extra=json_request_body(StageRequest),
)
async def abort_stage(request: Request, models: ModelStoreDep, body: StageBody) -> StageResponse:
    """The champion serves everyone again; the challenger is recorded as rolled back."""
    return await _end_stage(request, models, body, promote=False)


async def _end_stage(
    request: Request, models: ModelStore, body: StageRequest | None, promote: bool
) -> StageResponse:
    body = body or StageRequest()
    reason = body.reason or ("promoted by hand" if promote else "aborted by hand")
    try:
        version = await run_in_threadpool(models.registry.end_stage, promote, reason, body.version)
    except RegistryError as exc:
        raise ApiError(409, "no_such_stage", str(exc)) from exc
    await run_in_threadpool(models.load_current)
    champion = models.registry.current_version()
    if champion is None:  # a stage only ever stands beside a champion; a hand edit removed it
        raise ApiError(409, "no_champion", "the stage ended but no version is served")
    request.state.model_version = champion
    return StageResponse(
        version=version, stage="champion" if promote else "rolled_back", champion=champion
    )
