"""Progressive delivery in real serving processes: the canary split (deterministic, the same in
every worker and every server, the configured share), feedback routed like predictions, /model
and /model/versions, the admin routes, canary health, and what a crash in a stage leaves."""

from __future__ import annotations

import base64
from collections import Counter

import pytest

from ctloop.config import CoreSettings
from ctloop.delivery import routed_to_challenger
from ctloop.registry import ModelRegistry
from harness import loopback
from harness.data import copy_workspace
from harness.delivery import register_challenger, register_failing_challenger, stage_by_worker
from harness.processes import LiveServer, json_logs, wait_for

SETTLED = {"RETRAIN_EVERY": "100000", "MONITORING_MIN_ROWS": "100000", "CANARY_MIN_ROWS": "100000"}


def image(samples: dict[str, bytes], label: str = "3") -> dict:
    return {"image": base64.b64encode(samples[label]).decode()}


def stage_of(url: str) -> dict | None:
    return loopback.get(f"{url}/model").json()["delivery"]["stage"]


def version_for(url: str, samples, client: str | None = None) -> str:
    """The version that answers one /predict, on a new connection each time (any worker)."""
    return answer(url, samples, client)[0]


def answer(url: str, samples, client: str | None = None) -> tuple[str, str]:
    """(model version, request id) of one /predict on a new connection (any worker)."""
    headers = {"X-Client-ID": client} if client else {}
    reply = loopback.post(f"{url}/predict", json=image(samples), headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()["model_version"], reply.headers["x-request-id"]


@pytest.fixture
def staged(built: CoreSettings, tmp_path) -> tuple[CoreSettings, str]:
    """A workspace whose challenger (trained on flipped labels) is a 20 % canary."""
    settings = copy_workspace(built, tmp_path)
    challenger = register_challenger(settings, flip=True)
    ModelRegistry(settings.artifacts_dir).start_stage(challenger, "canary", 20.0, "test", 0)
    return settings, challenger


def test_the_canary_split_is_the_same_in_every_worker_and_server(staged, samples, tmp_path):
    settings, challenger = staged
    clients = [f"client-{i}" for i in range(150)]
    expected = {c: routed_to_challenger(f"client:{c}", 20.0) for c in clients}
    with (
        LiveServer(settings, tmp_path / "a.log", workers=2, **SETTLED) as two_workers,
        LiveServer(settings, tmp_path / "b.log", **SETTLED) as other_server,
    ):
        answers = {
            c: {version_for(s.url, samples, c) for s in (two_workers, two_workers, other_server)}
            for c in clients
        }
        anonymous = [answer(two_workers.url, samples) for _ in range(300)]
        # Feedback from a client is predicted and recorded by the version that answers it.
        for client in clients[:20]:
            reply = loopback.post(
                f"{two_workers.url}/feedback",
                json={**image(samples), "target": "3"},
                headers={**two_workers.auth, "X-Client-ID": client},
            ).json()
            assert reply["model_version"] == (challenger if expected[client] else "v0001")
        model = loopback.get(f"{two_workers.url}/model").json()
        versions = loopback.get(f"{two_workers.url}/model/versions").json()
        metrics = loopback.get(f"{two_workers.url}/metrics").text
    for client, seen in answers.items():
        assert seen == {challenger if expected[client] else "v0001"}, client
    share = sum(expected.values()) / len(clients)
    assert abs(share - 0.2) < 0.07  # 150 fixed keys: 0.2 give or take their hash
    # Without a client id, each request is routed by its own id (random, returned in the reply).
    for version, request_id in anonymous:
        routed = routed_to_challenger(f"request:{request_id}", 20.0)
        assert version == (challenger if routed else "v0001"), request_id
    share = Counter(version for version, _ in anonymous)[challenger] / len(anonymous)
    assert abs(share - 0.2) < 0.1  # 300 random ids: 0.2 give or take 0.023 (4.3 sigma)
    pids = {r["pid"] for r in json_logs(tmp_path / "a.log") if r.get("route") == "/predict"}
    assert len(pids) == 2  # both workers answered, and agreed on every client
    delivery = model["delivery"]
    assert delivery["strategy"] == "direct" and delivery["stage"]["version"] == challenger
    assert delivery["split"] == {"v0001": 80.0, challenger: 20.0}
    assert delivery["live"]["challenger_rows"] == sum(expected[c] for c in clients[:20])
    assert delivery["live"]["decision"] == "wait"
    canary_rows = delivery["live"]["challenger_rows"]
    assert (
        f'ctloop_stage_live_rows{{role="challenger",version="{challenger}"}} {canary_rows}.0'
        in (metrics)
    )
    assert 'ctloop_stage_live_accuracy{role="champion",version="v0001"} 1.0' in metrics
    assert f'ctloop_stage_percent{{stage="canary",version="{challenger}"}}' not in metrics  # pid
    assert f'stage="canary",version="{challenger}"}} 20.0' in metrics
    requests = (
        f'ctloop_version_request_duration_seconds_count{{outcome="ok",version="{challenger}"}}'
    )
    assert requests in metrics
    stages = {v["version"]: [s["stage"] for s in v["stages"]] for v in versions}
    assert stages == {"v0001": ["champion"], challenger: ["canary"]}


def test_the_admin_routes_end_a_stage_by_hand(staged, samples, tmp_path):
    settings, challenger = staged
    with LiveServer(settings, tmp_path / "server.log", **SETTLED) as server:
        url = server.url
        assert loopback.post(f"{url}/model/stage/abort").status_code == 401
        wrong = loopback.post(
            f"{url}/model/stage/abort", json={"version": "v0001"}, headers=server.auth
        )
        assert wrong.status_code == 409 and "no longer on stage" in wrong.json()["detail"]
        reply = loopback.post(
            f"{url}/model/stage/abort", json={"reason": "looks odd"}, headers=server.auth
        )
        assert reply.json() == {"version": challenger, "stage": "rolled_back", "champion": "v0001"}
        assert stage_of(url) is None
        assert loopback.post(f"{url}/model/stage/promote", headers=server.auth).status_code == 409
        second = register_challenger(settings)
        ModelRegistry(settings.artifacts_dir).start_stage(second, "shadow", 100.0, "test", 0)
        wait_for(lambda: stage_of(url) is not None, timeout=10, what="the shadow")
        reply = loopback.post(f"{url}/model/stage/promote", headers=server.auth)
        assert reply.json() == {"version": second, "stage": "champion", "champion": second}
        assert version_for(url, samples, "anyone") == second
    history = ModelRegistry(settings.artifacts_dir).history()
    moves = [(m["version"], m["stage"], m["reason"]) for m in history[-4:]]
    assert moves == [
        (challenger, "rolled_back", "looks odd"),
        (second, "shadow", "test"),
        ("v0001", "retired", f"{second} is champion: promoted by hand"),
        (second, "champion", "promoted by hand"),
    ]


def test_a_canary_that_fails_is_rolled_back_by_its_health(built, samples, tmp_path):
    settings = copy_workspace(built, tmp_path)
    failing = register_failing_challenger(settings)
    ModelRegistry(settings.artifacts_dir).start_stage(failing, "canary", 50.0, "test", 0)
    env = {**SETTLED, "CANARY_MIN_REQUESTS": "20"}
    with LiveServer(settings, tmp_path / "server.log", workers=2, **env) as server:
        statuses = Counter()

        def traffic_until_rolled_back() -> bool:
            for i in range(20):
                reply = loopback.post(
                    f"{server.url}/predict", json=image(samples), headers={"X-Client-ID": f"c{i}"}
                )
                statuses[reply.status_code] += 1
            return stage_of(server.url) is None

        wait_for(traffic_until_rolled_back, timeout=30, what="the health rollback")
        assert statuses[500] >= 20 and statuses[200] >= 20  # the canary's clients got errors
        # One worker's /model says the stage is over; the other may not have re-read it yet.
        wait_for(lambda: not stage_by_worker(server.url), timeout=30, what="every worker off it")
        assert all(version_for(server.url, samples, f"c{i}") == "v0001" for i in range(20))
    last = ModelRegistry(settings.artifacts_dir).history()[-1]
    assert last["version"] == failing and last["stage"] == "rolled_back"
    assert last["reason"].startswith(
        "canary health: error ratio 1.000 against the champion's 0.000"
    )


def test_a_crash_in_a_stage_resumes_it_or_aborts_it_never_a_mix(staged, samples, tmp_path):
    settings, challenger = staged
    clients = [f"client-{i}" for i in range(40)]
    expected = {c: challenger if routed_to_challenger(f"client:{c}", 20.0) else "v0001"
                for c in clients}  # fmt: skip
    server = LiveServer(settings, tmp_path / "first.log", workers=2, **SETTLED).start()
    assert {c: version_for(server.url, samples, c) for c in clients} == expected
    server.kill()  # SIGKILL: the launcher and both workers, mid-stage
    with LiveServer(settings, tmp_path / "second.log", workers=2, **SETTLED) as server:
        assert stage_of(server.url)["version"] == challenger  # resumed as it was
        assert {c: version_for(server.url, samples, c) for c in clients} == expected
        server.kill()
    # The challenger's files damaged while the API was down: the stage is aborted on restart.
    graph = settings.artifacts_dir / "versions" / challenger / "pipeline.onnx"
    graph.write_bytes(graph.read_bytes()[:100])
    with LiveServer(settings, tmp_path / "third.log", workers=2, **SETTLED) as server:
        assert stage_of(server.url) is None
        assert {version_for(server.url, samples, c) for c in clients} == {"v0001"}
    registry = ModelRegistry(settings.artifacts_dir)
    assert registry.current_version() == "v0001" and registry.current_stage() is None
    aborted = [m for m in registry.history() if m["version"] == challenger]
    assert [m["stage"] for m in aborted] == ["canary", "rolled_back"]  # once, by one worker
    assert "does not load in the API" in aborted[-1]["reason"]
