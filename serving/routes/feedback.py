"""POST /feedback: the true class of an image, appended durably to data/prod_data.csv."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from starlette.concurrency import run_in_threadpool

from ctloop.predict import Model
from ctloop.prod_data import NoRoomError, ProductionDataError, ProductionRow
from serving.delivery import answering_models, review_after_feedback
from serving.deps import (
    FeedbackLimitDep,
    RetrainingDep,
    SettingsDep,
    TokenDep,
    TrainerDep,
)
from serving.errors import ApiError
from serving.images import decode_base64, media_type, read_form, to_pixels, uploaded_files
from serving.metrics import FEEDBACK_ROWS, FEEDBACK_WRITE_FAILURES
from serving.routes.predict import ERRORS
from serving.settings import ServingSettings
from serving_client.contract import (
    CLASS_LABEL,
    IMAGE_FILE,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
)

router = APIRouter(tags=["feedback"])

FORM_SCHEMA = {
    "type": "object",
    "properties": {
        "file": {"type": "string", **IMAGE_FILE},
        "target": {
            "type": "string",
            "minLength": 1,
            "description": "The true class",
            **CLASS_LABEL,
        },
        "prediction": {
            "type": "string",
            "description": "The prediction the client showed",
            **CLASS_LABEL,
        },
    },
    "required": ["file", "target"],
    "maxProperties": 21,  # the file and at most 20 other fields (serving.images.read_form)
}


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    dependencies=[TokenDep, FeedbackLimitDep],  # in this order: strangers are not even counted
    responses={
        **ERRORS,
        401: {"model": ErrorResponse, "description": "API token required"},
        429: {"model": ErrorResponse, "description": "Too much feedback from this client"},
        503: {
            "model": ErrorResponse,
            "description": "No model loaded yet, or prod_data.csv cannot be written (its header "
            "is damaged, it cannot be opened); nothing was written",
        },
        507: {
            "model": ErrorResponse,
            "description": "No room for the row (a full disk or quota, a file-size limit); "
            "nothing was written, send it again later",
        },
    },
    summary="Record the true class of an image",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": FeedbackRequest.model_json_schema()},
                "multipart/form-data": {"schema": FORM_SCHEMA},
            },
        }
    },
)
async def feedback(
    request: Request,
    settings: SettingsDep,
    retraining: RetrainingDep,
    trainer: TrainerDep,
    background: BackgroundTasks,
) -> FeedbackResponse:
    """The image is embedded with the embedding that produced ref_data.csv, predicted by the
    serving model, and one row `PCA_1..PCA_n,target,prediction,model_version,timestamp,
    request_id,client_prediction` is appended to prod_data.csv (fsynced before this reply). Every
    RETRAIN_EVERY rows a retrain starts in another process. During a canary stage the image is
    predicted by the version that answers this client (`X-Client-ID`), and a stage is judged on
    each new row, after the reply has gone (it reads the rows since the stage began)."""
    model, _ = answering_models(request, shadow=False)  # a canary client's is the canary
    image, target, shown = await _read_feedback(request, settings)
    _check_class(model, target, "target")
    if shown:
        _check_class(model, shown, "prediction")
    embeddings, labels, _ = model.predict_pixels(await to_pixels([image], model.spec, settings))
    row = ProductionRow(
        embedding=embeddings[0],
        target=target,
        prediction=str(labels[0]),
        model_version=model.version,
        request_id=request.state.request_id,
        client_prediction=shown or "",
    )
    try:
        rows = await run_in_threadpool(retraining.prod_data.append, row)
    except ProductionDataError as exc:
        raise _not_saved(exc) from exc
    FEEDBACK_ROWS.inc()
    if request.app.state.models.served.stage is not None:  # judged on each new row, off the reply
        background.add_task(review_after_feedback, settings, request.app.state.models, rows)
    status = await run_in_threadpool(retraining.status, rows)
    if status.triggered:
        trainer.poke()
    return FeedbackResponse(
        rows=rows,
        retrain_triggered=status.triggered,
        rows_until_retrain=status.rows_until_next,
        retrain_every=status.every,
        target=target,
        prediction=row.prediction,
        model_version=model.version,
        request_id=row.request_id,
    )


async def _read_feedback(
    request: Request, settings: ServingSettings
) -> tuple[bytes, str, str | None]:
    kind = media_type(request)
    if kind == "application/json":
        body = FeedbackRequest.model_validate_json(await request.body())
        return decode_base64(body.image, "image"), body.target.strip(), _blank(body.prediction)
    if kind == "multipart/form-data":
        form = await read_form(request, settings)
        try:
            files = await uploaded_files(form)
            target = form.get("target")
            shown = form.get("prediction")
        finally:
            await form.close()
        if len(files) != 1:
            raise ApiError(422, "one_image", "send exactly one 'file' with a feedback")
        if not isinstance(target, str) or not target.strip():
            raise ApiError(422, "missing_target", "the form needs a 'target' field: the true class")
        return files[0], target.strip(), _blank(shown if isinstance(shown, str) else None)
    raise ApiError(
        415,
        "unsupported_media_type",
        'send JSON {"image": "<base64>", "target": "<class>"} or a multipart form',
    )


def _not_saved(exc: ProductionDataError) -> ApiError:
    """507 when the row had no room (the client sends it again later), 503 when the file cannot
    be written until the operator acts; counted either way."""
    if isinstance(exc, NoRoomError):
        FEEDBACK_WRITE_FAILURES.labels("no_room").inc()
        return ApiError(
            507,
            "insufficient_storage",
            f"feedback cannot be saved, nothing was written: {exc}. Send it again once the "
            "operator has made room; predictions still work",
            headers={"Retry-After": "60"},
        )
    FEEDBACK_WRITE_FAILURES.labels("unavailable").inc()
    return ApiError(
        503,
        "feedback_unavailable",
        f"feedback cannot be saved, nothing was written: {exc}. Predictions still work; the "
        "operator must repair or move the file",
    )


def _check_class(model: Model, value: str, field: str) -> None:
    if value not in model.classes:
        raise ApiError(
            422,
            "unknown_class",
            f"{field} {value!r} is not one of the model's classes: {', '.join(model.classes)}",
            classes=model.classes,
        )


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None
