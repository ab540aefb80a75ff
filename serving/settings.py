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
        description="Feedback requests per client, in the `limits` notation; a client is its "
        "address and its credential (a hash of its bearer token), never a header it chooses. "
        "The page sends all its users' feedback from one address with one token: they share "
        "one budget, so raise this if they get 429. Each worker counts its own; empty: no limit",
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
        262_144,
        ge=0,
        description="Pixels of each request decoded on the event loop (its first images, while "
        "they fit); the others are decoded in threads",
    )
    decode_budget_pixels: int = Field(
        16_777_216,
        ge=1,
        description="Most pixels each worker decodes at once in its threads (images larger than "
        "INLINE_PIXELS; a JPEG counts the pixels of its reduced-scale decode). A decode costs up "
        "to about 15 bytes per pixel: the default, one 4096 x 4096 picture, keeps a worker "
        "within about 250 MB of decoding whatever arrives (docs/studies/hardening.md). An image "
        "larger than the budget is decoded alone",
    )
    decode_wait_seconds: float = Field(
        2.0,
        ge=0,
        description="How long a large image waits for DECODE_BUDGET_PIXELS to free up (first "
        "come, first served) before its request gets 503 with Retry-After; 0: no wait",
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
