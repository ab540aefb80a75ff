"""Fixtures for the serving API tests: live servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ctloop.config import CoreSettings
from harness.data import copy_workspace
from harness.processes import LiveServer


@pytest.fixture(scope="module")
def server(built: CoreSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One worker, small limits so that the limits can be tested quickly."""
    root = tmp_path_factory.mktemp("served")
    settings = copy_workspace(built, root)
    live = LiveServer(
        settings,
        root / "server.log",
        SERVING_MAX_BODY_BYTES="200000",
        SERVING_MAX_BATCH="8",
        RETRAIN_EVERY="1000",
    )
    with live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, headers=server.auth) as http:
        yield http
