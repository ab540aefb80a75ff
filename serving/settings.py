"""Settings of the serving API: the ML core's (paths, k, gate) plus the HTTP side."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import field_validator
from pydantic_settings import NoDecode

from ctloop.config import CoreSettings
from stackconf import ApiTokenSettings, setting

API = "Serving API"
HARDENING = "Serving API: hardening"


class ServingSettings(CoreSettings, ApiTokenSettings):
    """Everything the API reads from the environment, once."""

    host: str = setting(
        "127.0.0.1",
        "Interface the API listens on (the image sets 0.0.0.0; Compose publishes the port on "
        "BIND_ADDRESS only)",
        env="SERVING_HOST",
        section=API,
        renamed=("HOST",),
        compose="no",
    )
    port: int = setting(
        8080,
        "Port of the API: the one it listens on, and under Compose the one published on the host "
        "(the container listens on 8080)",
        env="SERVING_PORT",
        section=API,
        start=True,
        renamed=("PORT",),
        compose="host",
        ge=1,
        le=65535,
    )
    workers: int = setting(
        2,
        "uvicorn worker processes",
        env="SERVING_WORKERS",
        section=API,
        renamed=("WORKERS",),
        ge=1,
    )
    cors_origins: Annotated[list[str], NoDecode] = setting(
        list,
        "Comma-separated origins allowed to call the API from a browser",
        env="SERVING_CORS_ORIGINS",
        section=API,
        renamed=("CORS_ORIGINS",),
    )
    log_level: str = setting(
        "INFO",
        "Python logging level",
        env="SERVING_LOG_LEVEL",
        section=API,
        renamed=("LOG_LEVEL",),
    )
    model_poll_seconds: float = setting(
        1.0,
        "How often each worker checks for a newly promoted model",
        env="SERVING_MODEL_POLL_SECONDS",
        section=API,
        renamed=("MODEL_POLL_SECONDS",),
        gt=0,
    )
    trainer_check_seconds: float = setting(
        5.0,
        "How often each worker looks for retrains due with no trainer running (a trainer that "
        "died is replaced within this time)",
        env="SERVING_TRAINER_CHECK_SECONDS",
        section=API,
        renamed=("TRAINER_CHECK_SECONDS",),
        gt=0,
    )
    feedback_rate_limit: str = setting(
        "10/second;600/minute",
        "Feedback requests per client, in the `limits` notation; a client is its address and its "
        "credential (a hash of its bearer token), never a header it chooses. The page sends all "
        "its users' feedback from one address with one token: they share one budget, so raise "
        "this if they get 429. Each worker counts its own; empty: no limit",
        env="SERVING_FEEDBACK_RATE_LIMIT",
        section=HARDENING,
        renamed=("FEEDBACK_RATE_LIMIT",),
    )
    max_body_bytes: int = setting(
        4 * 1024 * 1024,
        "Larger request bodies get 413",
        env="SERVING_MAX_BODY_BYTES",
        section=HARDENING,
        renamed=("MAX_BODY_BYTES",),
        ge=1024,
    )
    max_batch: int = setting(
        64,
        "Most images in one /predict call",
        env="SERVING_MAX_BATCH",
        section=HARDENING,
        renamed=("MAX_BATCH",),
        ge=1,
    )
    max_batch_pixels: int = setting(
        16_777_216,
        "Most pixels in all the images of one request together, checked before any is decoded",
        env="SERVING_MAX_BATCH_PIXELS",
        section=HARDENING,
        renamed=("MAX_BATCH_PIXELS",),
        ge=64,
    )
    inline_pixels: int = setting(
        262_144,
        "Pixels of each request decoded on the event loop (its first images, while they fit); "
        "the others are decoded in threads",
        env="SERVING_INLINE_PIXELS",
        section=HARDENING,
        renamed=("INLINE_PIXELS",),
        ge=0,
    )
    decode_budget_pixels: int = setting(
        16_777_216,
        "Most pixels each worker decodes at once in its threads (images larger than "
        "SERVING_INLINE_PIXELS; a JPEG counts the pixels of its reduced-scale decode). A decode "
        "costs up to about 15 bytes per pixel: the default, one 4096 x 4096 picture, keeps a "
        "worker within about 250 MB of decoding whatever arrives (docs/studies/hardening.md). An "
        "image larger than the budget is decoded alone",
        env="SERVING_DECODE_BUDGET_PIXELS",
        section=HARDENING,
        renamed=("DECODE_BUDGET_PIXELS",),
        ge=1,
    )
    decode_wait_seconds: float = setting(
        2.0,
        "How long a large image waits for SERVING_DECODE_BUDGET_PIXELS to free up (first come, "
        "first served) before its request gets 503 with Retry-After; 0: no wait",
        env="SERVING_DECODE_WAIT_SECONDS",
        section=HARDENING,
        renamed=("DECODE_WAIT_SECONDS",),
        ge=0,
    )
    header_timeout_seconds: float = setting(
        10.0,
        "A request's headers must arrive within this time (else 408)",
        env="SERVING_HEADER_TIMEOUT_SECONDS",
        section=HARDENING,
        renamed=("HEADER_TIMEOUT_SECONDS",),
        gt=0,
    )
    body_timeout_seconds: float = setting(
        30.0,
        "A request's body must arrive within this time after its headers",
        env="SERVING_BODY_TIMEOUT_SECONDS",
        section=HARDENING,
        renamed=("BODY_TIMEOUT_SECONDS",),
        gt=0,
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value


@lru_cache(maxsize=1)
def get_serving_settings() -> ServingSettings:
    return ServingSettings()
