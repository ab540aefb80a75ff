"""Faults a power cut, a full disk, a hand edit or a dead process leave behind, against a real
server: it starts, /predict serves the newest version that verifies, /ready and /model say what
is wrong, every error is the JSON error body, and nothing acknowledged is ever lost."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from ctloop.candidate import train_candidate
from ctloop.registry import ModelRegistry
from ctloop.retrain_log import RetrainLog
from ctloop.trainer import trainer_is_running, trainer_lock
from harness import loopback
from harness.data import copy_workspace, served_feedback, write_prod
from harness.images import b64
from harness.processes import LiveServer, trainer_pids, wait_for
from tests.serving.test_api_contract import samples_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_versions_built(built, tmp_path_factory):
    """v0002 trained once on `built`'s data (it passes the gate), served after its parent."""
    settings = copy_workspace(built, tmp_path_factory.mktemp("two_versions"))
    registry = ModelRegistry(settings.artifacts_dir)
    candidate = train_candidate(settings, registry)  # same data: passes the gate
    assert candidate.version == "v0002" and registry.current_version() == "v0002"
    return settings


@pytest.fixture
def two_versions(two_versions_built, tmp_path):
    """A private stack serving v0002, whose parent v0001 was served before it."""
    settings = copy_workspace(two_versions_built, tmp_path)
    return settings, ModelRegistry(settings.artifacts_dir)


def predict(server: LiveServer, image: bytes) -> httpx.Response:
    return loopback.post(f"{server.url}/predict", json={"image": b64(image)}, timeout=30)


def fallback_metric(server: LiveServer) -> float:
    values = samples_of(loopback.get(f"{server.url}/metrics").text)
    return max(v for (name, _), v in values.items() if name == "ctloop_model_fallback")


@pytest.mark.parametrize(
    ("damage", "serving", "words"),
    [
        (lambda r: r.current_path.write_text('{"version": "v00'), "v0002", "cannot be read"),
        (lambda r: r.current_path.unlink(), "v0002", "is missing although versions exist"),
        (
            lambda r: (r.versions_dir / "v0002" / "classifier.onnx").write_bytes(b"changed"),
            "v0001",
            "does not match its sha256",
        ),
        (
            lambda r: (r.versions_dir / "v0002" / "pipeline.onnx").unlink(),
            "v0001",
            "pipeline.onnx is missing",
        ),
    ],
    ids=["truncated pointer", "no pointer", "modified file", "missing file"],
)
def test_a_broken_registry_state_starts_on_the_newest_version_that_verifies(
    two_versions, tmp_path, samples, damage, serving, words
) -> None:
    settings, registry = two_versions
    damage(registry)
    # Held: the trainer would repair the registry (tests/serving/test_api_recovery.py).
    with trainer_lock(settings), LiveServer(settings, tmp_path / "server.log") as server:
        reply = predict(server, samples["7"])
        assert reply.status_code == 200 and reply.json()["model_version"] == serving
        ready = loopback.get(f"{server.url}/ready").json()
        assert ready["status"] == "degraded" and words in ready["problems"][0]
        model = loopback.get(f"{server.url}/model").json()
        assert model["version"] == serving and model["fallback"]["serving"] == serving
        assert words in model["fallback"]["reason"]
        assert fallback_metric(server) == 1
        assert loopback.get(f"{server.url}/model/versions").status_code == 200
        assert any('"event": "model_fallback"' in line for line in server.logs().splitlines()), (
            "a clear log line"
        )


def test_a_repaired_pointer_ends_the_fallback_without_a_restart(
    two_versions, tmp_path, samples
) -> None:
    settings, registry = two_versions
    registry.current_path.write_text("{")
    with trainer_lock(settings), LiveServer(settings, tmp_path / "server.log") as server:
        assert loopback.get(f"{server.url}/model").json()["fallback"] is not None
        reply = loopback.post(
            f"{server.url}/model/rollback", json={"version": "v0001"}, headers=server.auth
        )
        assert reply.status_code == 200, reply.text
        wait_for(
            lambda: loopback.get(f"{server.url}/model").json()["fallback"] is None,
            30,
            what="the fallback to end",
        )
        assert predict(server, samples["7"]).json()["model_version"] == "v0001"
        assert fallback_metric(server) == 0


def test_torn_ledger_lines_do_not_stop_the_service(two_versions, tmp_path) -> None:
    settings, _ = two_versions
    ledger = RetrainLog(settings.retrain_log_path)
    ledger.append({"trigger_rows": 20, "decision": "rejected", "version": "v0009"})
    with settings.retrain_log_path.open("ab") as handle:
        handle.write(b'{"trigger_rows": 40, "decis')  # a crash mid-write
    with LiveServer(settings, tmp_path / "server.log") as server:
        for path in ("/model", "/model/versions", "/metrics", "/ready"):
            assert loopback.get(f"{server.url}{path}").status_code == 200, path
        model = loopback.get(f"{server.url}/model").json()
        assert model["last_retrain"]["trigger_rows"] == 20
    ledger.append({"trigger_rows": 40, "decision": "rejected", "version": "v0010"})
    assert [d["trigger_rows"] for d in RetrainLog(settings.retrain_log_path).decisions()] == [
        20,
        40,
    ]


def test_a_prod_data_without_its_header_refuses_feedback_and_keeps_predicting(
    built, tmp_path, samples
) -> None:
    """A line that is not a row is skipped and feedback goes on (tests/serving/
    test_api_storage.py); without the header no column has a meaning: feedback is refused."""
    settings = copy_workspace(built, tmp_path)
    with LiveServer(settings, tmp_path / "server.log") as server:
        body = {"image": b64(samples["4"]), "target": "4"}
        first = loopback.post(f"{server.url}/feedback", json=body, headers=server.auth)
        assert first.status_code == 200
        path = settings.prod_data_path
        path.write_bytes(path.read_bytes().split(b"\n", 1)[1])  # while the service runs
        corrupt = path.read_bytes()

        refused = loopback.post(f"{server.url}/feedback", json=body, headers=server.auth)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "feedback_unavailable"
        assert str(path) in refused.json()["detail"] and "line" in refused.json()["detail"]
        assert path.read_bytes() == corrupt, "nothing appended after the corrupt line"
        assert predict(server, samples["4"]).status_code == 200
        ready = loopback.get(f"{server.url}/ready")
        assert (
            ready.status_code == 200 and "feedback cannot be saved" in ready.json()["problems"][0]
        )
        assert loopback.get(f"{server.url}/metrics").status_code == 200

    # A restart on the corrupt file: the same, from the first request.
    with LiveServer(settings, tmp_path / "restart.log") as server:
        assert predict(server, samples["4"]).status_code == 200
        again = loopback.post(f"{server.url}/feedback", json=body, headers=server.auth)
        assert again.status_code == 503 and path.read_bytes() == corrupt


def test_a_killed_trainer_is_replaced_without_new_traffic(built, tmp_path, samples) -> None:
    """SIGKILL the trainer mid-retrain: within seconds another one decides the trigger."""
    settings = copy_workspace(built, tmp_path)
    embeddings, targets, predictions = served_feedback(built)
    write_prod(settings.prod_data_path, embeddings[:19], targets[:19], predictions[:19])
    env = {"RETRAIN_EVERY": "20", "SERVING_TRAINER_CHECK_SECONDS": "1"}
    with LiveServer(settings, tmp_path / "server.log", **env) as server:
        reply = loopback.post(
            f"{server.url}/feedback",
            json={"image": b64(samples["5"]), "target": "5"},
            headers=server.auth,
        )
        assert reply.json()["retrain_triggered"] is True
        ledger = RetrainLog(settings.retrain_log_path)

        def training() -> bool:  # the attempt is logged and the trainer still holds its lock
            return trainer_is_running(settings) and any(
                e.get("event") == "attempt" for e in ledger.entries()
            )

        wait_for(training, 60, 0.005, "the trainer to start on the trigger")
        for pid in trainer_pids(settings.artifacts_dir):
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        decisions = wait_for(
            lambda: RetrainLog(settings.retrain_log_path).decisions(), 60, what="a decision"
        )
        assert time.monotonic() - killed_at < 60
        assert [d["trigger_rows"] for d in decisions] == [20]
        attempts = [
            e
            for e in RetrainLog(settings.retrain_log_path).entries()
            if e.get("event") == "attempt"
        ]
        assert len(attempts) >= 2, "the killed attempt, then the one that decided"
        model = loopback.get(f"{server.url}/model").json()
        assert model["retrain_backlog"] == 0


def test_feedback_on_a_read_only_prod_data_is_refused_not_crashed(built, tmp_path, samples):
    """The file cannot be opened for writing (here: a folder stands in its way, as root ignores
    file modes; the container's read-only data/ is in tests/e2e)."""
    settings = copy_workspace(built, tmp_path)
    settings.prod_data_path.unlink(missing_ok=True)
    settings.prod_data_path.mkdir()
    with LiveServer(settings, tmp_path / "server.log") as server:
        assert predict(server, samples["2"]).status_code == 200
        refused = loopback.post(
            f"{server.url}/feedback",
            json={"image": b64(samples["2"]), "target": "2"},
            headers=server.auth,
        )
        assert refused.status_code == 503 and "cannot be" in refused.json()["detail"]
        assert loopback.get(f"{server.url}/ready").json()["status"] == "degraded"
