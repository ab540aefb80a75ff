"""Progressive delivery end to end: the traffic simulator (`python -m traffic --strategy ...`)
against real servers carries a challenger on stage to an automatic decision. A challenger
trained on flipped labels is rolled back, a sound one promoted; as a canary (two workers) and as
a shadow."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ctloop.config import CoreSettings
from ctloop.prod_data import ProductionData
from ctloop.registry import ModelRegistry
from harness import loopback
from harness.data import copy_workspace, embedding_size
from harness.delivery import register_challenger, stage_by_worker
from harness.processes import LiveServer, child_environment, wait_for
from traffic.delivery import StageScenario, play_stage

pytestmark = pytest.mark.slow

STAGE_ENV = {
    "RETRAIN_EVERY": "100000",  # no retrain: the stages under test are the only moves
    "MONITORING_MIN_ROWS": "100000",
    "STAGE_MARGIN": "0.1",
    "CANARY_MIN_ROWS": "40",
    "SHADOW_MIN_ROWS": "40",
    "SHADOW_SHARE": "1",
    # Judged on feedback here: a p99 three times the champion's over a few hundred requests is
    # what a loaded machine gives any version (the latency health is in test_api_delivery).
    "CANARY_LATENCY_FACTOR": "1000",
}


def put_on_stage(
    server: LiveServer, version: str, stage: str, percent: float, workers: int = 1
) -> None:
    """As the trainer does when a challenger passes the gate (here: registered by the test);
    returns once every worker serves it (one /model answer says only what one worker serves)."""
    settings = server.settings
    registry = ModelRegistry(settings.artifacts_dir)
    rows = ProductionData(settings.prod_data_path, embedding_size(settings)).count_rows_on_disk()
    registry.start_stage(version, stage, percent, "put on stage by the test", rows)
    wait_for(
        lambda: list(stage_by_worker(server.url).values()) == [(version, stage)] * workers,
        timeout=60,
        what=f"{version} on stage in {workers} workers",
    )


@pytest.fixture(scope="module")
def workspace_with_challengers(
    built: CoreSettings, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CoreSettings, str, str]:
    settings = copy_workspace(built, tmp_path_factory.mktemp("delivery"))
    return settings, register_challenger(settings, flip=True), register_challenger(settings)


@pytest.fixture(scope="module")
def canary_server(workspace_with_challengers, tmp_path_factory) -> Iterator[LiveServer]:
    settings = workspace_with_challengers[0]
    root = tmp_path_factory.mktemp("canary-server")
    env = {**STAGE_ENV, "PROMOTION_STRATEGY": "canary", "CANARY_SHARE": "0.25"}
    with LiveServer(settings, root / "server.log", workers=2, **env) as server:
        yield server


def test_the_simulator_rolls_a_flipped_canary_back(
    canary_server: LiveServer, workspace_with_challengers
) -> None:
    settings, flipped, _ = workspace_with_challengers
    put_on_stage(canary_server, flipped, "canary", 25.0, workers=2)
    command = [
        sys.executable, "-m", "traffic", "--strategy", "canary", "--url", canary_server.url,
        "--samples-dir", str(settings.samples_dir), "--round-size", "40", "--clients", "100",
    ]  # fmt: skip
    result = subprocess.run(
        command,
        env=child_environment(API_TOKEN=canary_server.token),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Judged once CANARY_MIN_ROWS (40) canary rows exist: on 40, or on a row or two more when
    # both workers append while one of them is judging (the first move wins).
    said = rf"outcome: {flipped} rolled_back \(live canary: live accuracy 0\.0\d\d on (\d+) rows"
    found = re.search(said, result.stdout)
    assert found and 40 <= int(found.group(1)) <= 44, result.stdout
    assert "served now: v0001" in result.stdout
    registry = ModelRegistry(settings.artifacts_dir)
    assert registry.current_version() == "v0001" and registry.current_stage() is None
    # Feedback rows carry the version that answered: the canary's rows are in the file.
    rows = ProductionData(settings.prod_data_path, embedding_size(settings)).read_rows()
    answered = set(rows.columns["model_version"].tolist())
    assert answered == {"v0001", flipped}


def test_the_simulator_promotes_a_sound_canary(
    canary_server: LiveServer, workspace_with_challengers
) -> None:
    settings, _, sound = workspace_with_challengers
    put_on_stage(canary_server, sound, "canary", 25.0, workers=2)
    scenario = StageScenario(
        url=canary_server.url,
        samples_dir=settings.samples_dir,
        strategy="canary",
        round_size=40,
        clients=100,
        seed=1,
        token=canary_server.token,
    )
    outcome = play_stage(scenario)
    assert outcome.decision == "promoted", outcome.reason
    assert outcome.reason.startswith("live canary: live accuracy")
    assert outcome.served_after == sound
    answered = {}
    for record in outcome.rounds:
        for version, count in record.requests.items():
            answered[version] = answered.get(version, 0) + count
    share = answered[sound] / sum(answered.values())
    assert set(answered) == {"v0001", sound} and 0.1 < share < 0.4  # 25 % of 100 clients
    history = ModelRegistry(settings.artifacts_dir).history()
    assert [(m["version"], m["stage"]) for m in history[-2:]] == [
        ("v0001", "retired"),
        (sound, "champion"),
    ]


@pytest.fixture(scope="module")
def shadow_setup(built: CoreSettings, tmp_path_factory) -> Iterator[tuple[LiveServer, str, str]]:
    root = tmp_path_factory.mktemp("shadow")
    settings = copy_workspace(built, root)
    flipped, sound = register_challenger(settings, flip=True), register_challenger(settings)
    env = {**STAGE_ENV, "PROMOTION_STRATEGY": "shadow"}
    with LiveServer(settings, root / "server.log", **env) as server:
        yield server, flipped, sound


@pytest.mark.parametrize("which", ["flipped", "sound"])
def test_a_shadow_is_judged_on_feedback_and_never_answers_a_client(
    shadow_setup: tuple[LiveServer, str, str], which: str
) -> None:
    server, flipped, sound = shadow_setup
    version = flipped if which == "flipped" else sound
    put_on_stage(server, version, "shadow", 100.0)
    scenario = StageScenario(
        url=server.url,
        samples_dir=server.settings.samples_dir,
        strategy="shadow",
        round_size=25,
        token=server.token,
    )
    outcome = play_stage(scenario)
    # Every reply came from the champion until the decision (a promotion takes effect in the
    # middle of the last round); the shadow's agreement went to the metrics.
    assert all(set(r.requests) == {outcome.champion} for r in outcome.rounds[:-1])
    assert set(outcome.rounds[-1].requests) <= {outcome.champion, version}
    agreement = [r.agreement for r in outcome.rounds]
    if which == "flipped":
        assert outcome.decision == "rolled_back" and outcome.served_after == outcome.champion
        assert max(agreement) < 0.1
    else:
        assert outcome.decision == "promoted", outcome.reason
        assert outcome.served_after == sound and min(agreement) > 0.8
    assert outcome.reason.startswith("live shadow: live accuracy")
    metrics = loopback.get(f"{server.url}/metrics").text
    assert f'ctloop_shadow_inference_seconds_count{{version="{version}"}}' in metrics
