"""POST /predict: one image or a small batch, as JSON base64 or as a multipart upload."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request, Response
from prometheus_client import Counter

from ctloop.predict import Model
from serving.bodies import parse_json
from serving.delivery import answering_models, shadow_later
from serving.errors import ApiError, Responses
from serving.images import decode_base64, media_type, read_form, to_pixels, uploaded_files
from serving.metrics import PREDICTIONS
from serving.routes.direct import DirectRoute, json_response
from serving.settings import ServingSettings
from serving_client.contract import (
    IMAGE_FILE,
    BatchPredictResponse,
    BatchPredictResponseWithGrid,
    ErrorResponse,
    Prediction,
    PredictionWithGrid,
    PredictRequest,
    PredictResponse,
    PredictResponseWithGrid,
)

GRID_MAX_SIDE = 64  # cells a side in a `grid` answer

# The hot route: it validates its own body and sends its own JSON (see serving.routes.direct).
router = APIRouter(tags=["predict"], route_class=DirectRoute)

ERRORS: Responses = {
    413: {"model": ErrorResponse, "description": "Body or image too large"},
    415: {"model": ErrorResponse, "description": "Neither JSON nor multipart"},
    422: {"model": ErrorResponse, "description": "Not an image, corrupt, blank, bad base64..."},
    503: {"model": ErrorResponse, "description": "No model loaded yet"},
}
MULTIPART_SCHEMA = {
    "type": "object",
    "properties": {
        "file": {
            "type": "array",
            "items": {"type": "string", **IMAGE_FILE},
            "minItems": 1,
            "description": "One image file, or several for a batch (at most SERVING_MAX_BATCH)",
        }
    },
    "required": ["file"],
    "maxProperties": 21,  # the files and at most 20 other fields (serving.images.read_form)
}


GRID_PARAMETER = {
    "name": "grid",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": "Also return `grid`, the preprocessed cells the model saw (for display)",
}


@router.post(
    "/predict",
    response_model=PredictResponse
    | BatchPredictResponse
    | PredictResponseWithGrid
    | BatchPredictResponseWithGrid,
    responses=ERRORS,
    summary="Predict the class of an image (or of a small batch)",
    openapi_extra={
        "parameters": [GRID_PARAMETER],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": PredictRequest.model_json_schema()},
                "multipart/form-data": {"schema": MULTIPART_SCHEMA},
            },
        },
    },
)
async def predict(request: Request) -> Response:
    """JSON `{"image": "<base64>"}` or `{"images": [...]}`, or multipart `file` field(s)
    (`curl -F file=@digit.png`). One image gives the class, the probability of every class, the
    model version that answered and a request id; several give a list of predictions. During a
    canary stage the version depends on the `X-Client-ID` header (the request id without one)."""
    model, shadow = answering_models(request)  # the champion, or the canary for this client
    settings = request.app.state.settings
    # The scope's raw query string: no parsing at all on the default path.
    with_grid = bool(request.scope["query_string"]) and _wants_grid(request)
    images, batch = await _read_images(request, settings)
    pixels = await to_pixels(images, model.spec, settings)
    embeddings, labels, probabilities = model.predict_pixels(pixels)
    if shadow is not None:
        served = request.app.state.models.served
        shadow_later(shadow, served.same_embedding, labels, embeddings, pixels)
    request_id = request.state.request_id
    if with_grid:
        return _with_grid(model, labels, probabilities, pixels, batch, request_id)
    if batch:
        rows = zip(labels, probabilities, strict=True)
        predictions = [Prediction(**_fields(model, label, row)) for label, row in rows]
        return json_response(
            BatchPredictResponse(
                predictions=predictions, model_version=model.version, request_id=request_id
            )
        )
    return json_response(
        PredictResponse(
            **_fields(model, labels[0], probabilities[0]),
            model_version=model.version,
            request_id=request_id,
        )
    )


def _wants_grid(request: Request) -> bool:
    value = request.query_params.get("grid", "false").lower()
    if value not in ("true", "1", "false", "0"):
        raise ApiError(422, "invalid_query", f"grid must be true or false, not {value!r}")
    return value in ("true", "1")


def _with_grid(
    model: Model,
    labels: np.ndarray,
    probabilities: np.ndarray,
    pixels: np.ndarray,
    batch: bool,
    request_id: str,
) -> Response:
    grids = [_shown(row, model.spec.grid_shape) for row in pixels]
    rows = zip(labels, probabilities, grids, strict=True)
    if batch:
        predictions = [
            PredictionWithGrid(**_fields(model, label, row), grid=grid) for label, row, grid in rows
        ]
        return json_response(
            BatchPredictResponseWithGrid(
                predictions=predictions, model_version=model.version, request_id=request_id
            )
        )
    return json_response(
        PredictResponseWithGrid(
            **_fields(model, labels[0], probabilities[0]),
            grid=grids[0],
            model_version=model.version,
            request_id=request_id,
        )
    )


def _shown(row: np.ndarray, shape: tuple[int, int, int]) -> list:
    """The cells as rows (of cells, or of [r, g, b] cells), averaged over blocks down to at most
    GRID_MAX_SIDE a side: an encoder's 224 x 224 colour input would be 150,528 numbers."""
    height, width, channels = shape
    cells = row.reshape(height, width, channels)
    factor = -(-max(height, width) // GRID_MAX_SIDE)
    if factor > 1:
        rows, columns = height // factor, width // factor
        blocks = cells[: rows * factor, : columns * factor].reshape(
            rows, factor, columns, factor, channels
        )
        cells = blocks.mean(axis=(1, 3))
    return np.round(cells if channels == 3 else cells[..., 0], 4).tolist()


async def _read_images(request: Request, settings: ServingSettings) -> tuple[list[bytes], bool]:
    kind = media_type(request)
    if kind == "application/json":
        body = parse_json(await request.body(), PredictRequest, max_items=settings.max_batch)
        if body.image is not None:
            return [decode_base64(body.image, "image")], False
        encoded = body.images or []  # PredictRequest holds one of the two
        return [decode_base64(value, f"images[{i}]") for i, value in enumerate(encoded)], True
    if kind == "multipart/form-data":
        form = await read_form(request, settings)
        try:
            images = await uploaded_files(form)
        finally:
            await form.close()
        return images, len(images) > 1
    raise ApiError(
        415,
        "unsupported_media_type",
        'send JSON {"image": "<base64>"} or a multipart form with a \'file\' field',
    )


_PREDICTED: dict[str, Counter] = {}  # the counter's child per class, looked up once


def _fields(model: Model, label: str, row: np.ndarray) -> dict:
    counter = _PREDICTED.get(label)
    if counter is None:
        counter = _PREDICTED[label] = PREDICTIONS.labels(label=label)
    counter.inc()
    values = row.tolist()
    return {
        "label": str(label),
        "confidence": round(max(values), 6),
        "probabilities": {
            name: round(value, 6) for name, value in zip(model.classes, values, strict=True)
        },
    }
