"""Settings of the serving API: the ML core's (paths, k, gate) plus the HTTP side."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from ctloop.config import CoreSettings


class ServingSettings(CoreSettings):
    """Everything the API reads from the environment, once."""

    host: str = Field(
        "127.0.0.1",
        description="Interface the API listens on (the container sets 0.0.0.0; Compose publishes "
        "the port on 127.0.0.1 unless BIND_ADDRESS opens it)",
    )
    port: int = Field(8080, description="Port the API listens on")
    workers: int = Field(2, ge=1, description="uvicorn worker processes")
    api_token: str | None = Field(
        None,
        description="The token /feedback and the admin routes ask for ('Authorization: Bearer "
        "<token>'); when unset, the one in SECRETS_DIR/api_token (generated at first start)",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins allowed to call the API from a browser",
    )
    feedback_rate_limit: str = Field(
        "10/second;600/minute",
        description="Feedback requests per client (address + X-Client-ID), in the `limits` "
        "notation; each worker counts its own; empty: no limit",
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Larger request bodies: 413")
    max_batch: int = Field(64, ge=1, description="Most images in one /predict call")
    max_batch_pixels: int = Field(
        16_777_216,
        ge=64,
        description="Most pixels in all the images of one request together, checked before any "
        "is decoded",
    )
    inline_pixels: int = Field(
        262_144, ge=0, description="Images up to this many pixels are decoded on the event loop"
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="A request's headers must arrive within this time (else 408)"
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="A request's body must arrive within this time after its headers"
    )
    model_poll_seconds: float = Field(
        1.0, gt=0, description="How often each worker checks for a newly promoted model"
    )
    trainer_check_seconds: float = Field(
        5.0,
        gt=0,
        description="How often each worker looks for retrains due with no trainer running "
        "(a trainer that died is replaced within this time)",
    )
    log_level: str = Field("INFO", description="Python logging level")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value


@lru_cache(maxsize=1)
def get_serving_settings() -> ServingSettings:
    return ServingSettings()
