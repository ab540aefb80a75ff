"""A running stack heals its registry by itself: when no version verifies, /ready and every 503
say which version and which file, and the trainer rebuilds a first model from ref_data.csv; when
the champion breaks, the fallback the workers serve becomes the champion; a trainer ends with the
server that started it. Real servers, the plain head (it trains in seconds) where it can."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from ctloop.registry import ModelRegistry
from ctloop.retrain_log import RetrainLog
from ctloop.trainer import trainer_lock
from harness import loopback
from harness.data import (
    PLAIN_ENV,
    copy_workspace,
    flip,
    plain_settings,
    served_feedback,
    write_prod,
)
from harness.images import b64
from harness.processes import LiveServer, trainer_pids, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def plain(plain_built, tmp_path):
    shutil.copytree(plain_built.data_dir, tmp_path / "data")
    shutil.copytree(plain_built.artifacts_dir, tmp_path / "artifacts")
    settings = plain_settings(tmp_path)
    return settings, ModelRegistry(settings.artifacts_dir)


def image(settings) -> bytes:
    return next((settings.samples_dir / "7").iterdir()).read_bytes()


def predict(server: LiveServer, data: bytes) -> httpx.Response:
    return loopback.post(f"{server.url}/predict", json={"image": b64(data)}, timeout=30)


def test_a_damaged_first_version_is_named_then_rebuilt(plain, tmp_path) -> None:
    settings, registry = plain
    flip(registry.versions_dir / "v0001" / "pipeline.onnx")
    server = LiveServer(settings, tmp_path / "server.log", **PLAIN_ENV)
    server.health = "/health"  # /ready is 503 until a model is served
    lock = trainer_lock(settings)
    lock.acquire()  # the trainer waits: first what the service says
    try:
        with server:
            ready = loopback.get(f"{server.url}/ready")
            assert ready.status_code == 503 and ready.headers["retry-after"]
            why = ready.json()["problems"][0]
            assert "v0001: pipeline.onnx does not match its sha256" in why, why
            assert "ref_data.csv" in why and "ctloop init" in why
            refused = predict(server, image(settings))
            assert refused.status_code == 503 and refused.json()["error"] == "model_not_ready"
            assert "v0001: pipeline.onnx does not match its sha256" in refused.json()["detail"]
            lock.release()
            served = wait_for(
                lambda: predict(server, image(settings)).status_code == 200,
                120,
                what="the trainer to rebuild a first model",
            )
            assert served
            assert predict(server, image(settings)).json()["model_version"] == "v0002"
            assert loopback.get(f"{server.url}/ready").json()["status"] == "ready"
    finally:
        if lock.is_locked:
            lock.release()
    assert "rebuilt from ref_data.csv" in registry.history()[-1]["reason"]


def test_a_broken_champion_gives_way_to_the_fallback_it_is_served_by(plain, tmp_path) -> None:
    settings, registry = plain
    from ctloop.candidate import train_candidate

    train_candidate(settings, registry)  # v0002
    (registry.versions_dir / "v0002" / "classifier.onnx").write_bytes(b"changed")
    with LiveServer(settings, tmp_path / "server.log", **PLAIN_ENV) as server:
        assert predict(server, image(settings)).json()["model_version"] == "v0001"
        wait_for(
            lambda: loopback.get(f"{server.url}/ready").json()["status"] == "ready",
            60,
            what="the trainer to make the fallback the champion",
        )
        assert registry.current_version() == "v0001"
        assert loopback.get(f"{server.url}/model").json()["fallback"] is None
    reason = registry.history()[-1]["reason"]
    assert reason.startswith("repaired: ") and "classifier.onnx does not match" in reason


def test_a_trainer_ends_when_the_server_that_started_it_stops(built, tmp_path) -> None:
    """The trainer runs in its own session (a worker's restart must not kill it), yet stopping
    the server stops it: a full rebuild of the five-network head is still training then."""
    settings = copy_workspace(built, tmp_path)
    embeddings, targets, predictions = served_feedback(built)
    write_prod(settings.prod_data_path, embeddings[:20], targets[:20], predictions[:20])
    server = LiveServer(
        settings,
        tmp_path / "server.log",
        RETRAIN_MODE="scratch",
        SERVING_WORKERS="2",
        HEAD_MEMBERS="5",  # the product's head: long enough a rebuild to be stopped mid-way
    )
    with server:
        ledger = RetrainLog(settings.retrain_log_path)
        wait_for(
            lambda: (
                trainer_pids(settings.artifacts_dir)
                and any(e.get("event") == "attempt" for e in ledger.entries())
            ),
            60,
            0.05,
            "the trainer to start on the trigger",
        )
        (pid,) = trainer_pids(settings.artifacts_dir)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"CTLOOP_SERVER_PID={server.process.pid}".encode() in environ
    stopped = time.monotonic()
    wait_for(lambda: not trainer_pids(settings.artifacts_dir), 20, what="the trainer to end")
    assert time.monotonic() - stopped < 20
    assert not RetrainLog(settings.retrain_log_path).decisions(), "it ended mid-training"
