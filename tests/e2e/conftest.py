"""The stack the end-to-end modules share: one `compose up --build` of a fresh copy."""

from __future__ import annotations

import os

import pytest

from harness.compose import Stack, compose_command, copy_repository, write_figures
from harness.data import typical_samples
from harness.processes import free_port

K = 10  # RETRAIN_EVERY for this run: k feedbacks start one retrain
FIGURES: dict = {}


@pytest.fixture(scope="session")
def compose() -> list[str]:
    found = compose_command()
    if found is None:
        pytest.skip("no Docker engine answers `docker info` (or no Compose v2): this needs both")
    return found


@pytest.fixture(scope="session")
def stack(compose, tmp_path_factory) -> Stack:
    root = copy_repository(tmp_path_factory.mktemp("clone"))
    if os.geteuid() == 0:  # a laptop: the folders belong to an ordinary user, uid 1000
        for folder in ("data", "artifacts", "secrets"):
            os.chown(root / folder, 1000, 1000)
    running = Stack(
        root,
        compose,
        free_port,
        RETRAIN_EVERY=str(K),
        REPORTING_REFRESH_SECONDS="3",
        MONITORING_MIN_ROWS=str(K),
    )
    try:
        FIGURES["cold_start_seconds"] = round(running.up(build=True), 1)
        yield running
    finally:
        FIGURES["image_sizes"] = running.image_sizes()
        running.down(volumes=True)
        path = write_figures(FIGURES)
        print(f"\nend-to-end figures ({path}): {FIGURES}")


@pytest.fixture(scope="session")
def samples(stack: Stack) -> dict[str, bytes]:
    return typical_samples(stack.root / "data" / "samples")
