"""Fixtures for the serving API tests: live servers on free loopback ports."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import make_settings, typical_samples
from live_server import LiveServer

from ctloop.config import CoreSettings


def copy_workspace(built: CoreSettings, root: Path) -> CoreSettings:
    shutil.copytree(built.data_dir, root / "data")
    shutil.copytree(built.artifacts_dir, root / "artifacts")
    return make_settings(root)


@pytest.fixture(scope="module")
def samples(built: CoreSettings) -> dict[str, bytes]:
    return typical_samples(built.samples_dir)


@pytest.fixture(scope="module")
def server(built: CoreSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One worker, small limits so that the limits can be tested quickly."""
    root = tmp_path_factory.mktemp("served")
    settings = copy_workspace(built, root)
    live = LiveServer(
        settings, root / "server.log", MAX_BODY_BYTES="200000", MAX_BATCH="8", RETRAIN_EVERY="1000"
    )
    with live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
