"""The serving app in the test's own process: `create_app(settings)` with its lifespan run, called
through `httpx.ASGITransport` (no server, no port: what needs no real process runs this way)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from ctloop.config import CoreSettings
from harness.processes import TEST_TOKEN
from serving.api import create_app
from serving.settings import ServingSettings

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


def serving_settings(core: CoreSettings, secrets_dir: Path, **overrides) -> ServingSettings:
    """Serving settings over a workspace (harness.data.copy_workspace), with the test token
    and the feedback rate limit out of the way unless `overrides` say otherwise."""
    values = {
        "data_dir": core.data_dir,
        "artifacts_dir": core.artifacts_dir,
        "secrets_dir": secrets_dir,
        "api_token": TEST_TOKEN,
        "feedback_rate_limit": "",
        "model_poll_seconds": 0.2,
        **overrides,
    }
    return ServingSettings(**values)


@contextlib.asynccontextmanager
async def in_process(
    settings: ServingSettings, client: tuple[str, int] = ("127.0.0.1", 40000)
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of the app of `settings`, between its lifespan's start and its end."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://serving.test", timeout=60
        ) as http:
            yield http
