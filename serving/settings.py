"""Settings of the serving API: the ML core's (paths, k, gate) plus the HTTP side."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from ctloop.config import CoreSettings


class ServingSettings(CoreSettings):
    """Everything the API reads from the environment, once."""

    host: str = Field("0.0.0.0", description="Interface the API listens on")  # noqa: S104
    port: int = Field(8080, description="Port the API listens on")
    workers: int = Field(2, ge=1, description="uvicorn worker processes")
    api_token: str | None = Field(
        None, description="If set, /feedback and admin routes need 'Authorization: Bearer <token>'"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins allowed to call the API from a browser",
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Larger request bodies: 413")
    max_batch: int = Field(64, ge=1, description="Most images in one /predict call")
    inline_pixels: int = Field(
        262_144, ge=0, description="Images up to this many pixels are decoded on the event loop"
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
