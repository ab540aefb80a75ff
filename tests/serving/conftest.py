"""Fixtures for the serving API tests: the app in process, and a live server for what needs one."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ctloop.config import CoreSettings
from harness.asgi import BlockingClient, in_process_blocking, serving_settings
from harness.data import copy_workspace
from harness.processes import LiveServer
from serving.settings import ServingSettings

# Small limits, so that the limits can be tested quickly; no retrain.
LIMITS = {"SERVING_MAX_BODY_BYTES": "200000", "SERVING_MAX_BATCH": "8", "RETRAIN_EVERY": "1000"}


@pytest.fixture(scope="module")
def settings(built: CoreSettings, tmp_path_factory: pytest.TempPathFactory) -> ServingSettings:
    """The API's settings over a private copy of the built workspace, with LIMITS."""
    root = tmp_path_factory.mktemp("in-process")
    return serving_settings(
        copy_workspace(built, root),
        root / "secrets",
        max_body_bytes=int(LIMITS["SERVING_MAX_BODY_BYTES"]),
        max_batch=int(LIMITS["SERVING_MAX_BATCH"]),
        retrain_every=int(LIMITS["RETRAIN_EVERY"]),
    )


@pytest.fixture(scope="module")
def client(settings: ServingSettings) -> Iterator[BlockingClient]:
    """The app of `settings` in this process (httpx.ASGITransport), with the token; one per
    module, so that its `statuses` hold every reply of the module."""
    with in_process_blocking(settings) as http:
        yield http


@pytest.fixture(scope="module")
def server(built: CoreSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real one-worker uvicorn with LIMITS, for what needs a process (its log, its memory)."""
    root = tmp_path_factory.mktemp("served")
    with LiveServer(copy_workspace(built, root), root / "server.log", **LIMITS) as live:
        yield live


@pytest.fixture
def live(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, headers=server.auth) as http:
        yield http
