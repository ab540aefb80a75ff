"""Typed dependencies: what a route needs, said in its signature (and overridable in tests).

Every route takes them this way except /predict, which runs on a DirectRoute and calls
`current_model` itself: dependency solving cost about 6 % of the worker's CPU per request there
(measured, docs/studies/performance.md). All `async def`: FastAPI runs a plain `def` dependency
in its thread pool, a thread hop on every request for what is an attribute lookup.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel

from ctloop.predict import Model
from ctloop.registry import ModelRegistry
from serving.bodies import parse_json
from serving.errors import ApiError
from serving.images import media_type
from serving.model_store import ModelStore
from serving.ratelimit import client_key
from serving.retraining import Retraining, TrainerLauncher
from serving.settings import ServingSettings
from serving_client.contract import RollbackRequest, StageRequest

M = TypeVar("M", bound=BaseModel)


def current_model(request: Request) -> Model:
    """The model this worker serves right now (503 until the first one is loaded)."""
    models = request.app.state.models
    model = models.model
    if model is None:
        raise model_not_ready(models)
    request.state.model_version = model.version
    return model


def model_not_ready(models: ModelStore) -> ApiError:
    """The 503 of every route that needs a model while none loads, with the true reason."""
    return ApiError(
        503, "model_not_ready", models.unavailable_reason(), headers={"Retry-After": "10"}
    )


async def get_model(request: Request) -> Model:
    return current_model(request)


async def get_settings(request: Request) -> ServingSettings:
    return request.app.state.settings


async def get_model_store(request: Request) -> ModelStore:
    return request.app.state.models


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.models.registry


async def get_retraining(request: Request) -> Retraining:
    return request.app.state.retraining


async def get_trainer(request: Request) -> TrainerLauncher:
    return request.app.state.trainer


async def require_token(request: Request) -> None:
    """The route needs 'Authorization: Bearer <token>' (API_TOKEN, or the generated one)."""
    expected = request.app.state.api_token
    scheme, _, offered = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        offered.encode(), expected.encode()
    ):
        raise ApiError(
            401,
            "unauthorized",
            "this route needs the API token: send 'Authorization: Bearer <token>' (API_TOKEN, "
            "or the token in secrets/api_token that the stack generated)",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def limit_feedback(request: Request) -> None:
    """SERVING_FEEDBACK_RATE_LIMIT per client: 429 with Retry-After beyond it."""
    wait = request.app.state.feedback_limit.wait_seconds(client_key(request))
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"too much feedback from this client: try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M | None]]:
    """A dependency: the request's optional JSON body as `model` (None when it is empty), read by
    serving.bodies.parse_json after the route's own dependencies have passed. A body FastAPI
    declares itself is parsed before any dependency runs: a stranger's 4 MB of brackets would be
    parsed before the token check refused them (and Python's JSON parser answers deep nesting
    with a 400 the schema does not describe). The route documents the body with
    serving.bodies.json_request_body."""

    async def read_body(request: Request) -> M | None:
        body = await request.body()
        if not body.strip():
            return None
        if media_type(request) not in ("", "application/json"):
            raise ApiError(415, "unsupported_media_type", "send the body as application/json")
        return parse_json(body, model)

    return read_body


SettingsDep = Annotated[ServingSettings, Depends(get_settings)]
ModelDep = Annotated[Model, Depends(get_model)]
ModelStoreDep = Annotated[ModelStore, Depends(get_model_store)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
RetrainingDep = Annotated[Retraining, Depends(get_retraining)]
TrainerDep = Annotated[TrainerLauncher, Depends(get_trainer)]
RollbackBody = Annotated[RollbackRequest | None, Depends(json_body(RollbackRequest))]
StageBody = Annotated[StageRequest | None, Depends(json_body(StageRequest))]
TokenDep = Depends(require_token)
FeedbackLimitDep = Depends(limit_feedback)
