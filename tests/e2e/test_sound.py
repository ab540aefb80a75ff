"""The README's sound: `DATASET=/app/data/my-sounds docker compose up` on a folder of spoken
digits, through the same images, services and loop as the digits."""

from __future__ import annotations

import base64
import os
import shutil

import pytest

from harness import loopback
from harness.compose import Stack, copy_repository
from harness.processes import free_port, wait_for
from harness.speech import HELD_OUT_SPEEDS, HELD_OUT_VOICES, WORDS, speak, write_spoken_digits

pytestmark = pytest.mark.docker

K = 10


@pytest.fixture
def sound_stack(compose, stack: Stack, tmp_path) -> Stack:
    """A second stack in another copy, on spoken digits (the images are `stack`'s build)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: apt-get install espeak-ng (.ci/run does it)")
    root = copy_repository(tmp_path / "clone")
    write_spoken_digits(root / "data" / "my-sounds", speeds=(160,))
    if os.geteuid() == 0:  # as `stack`: the folders belong to an ordinary user
        for path in [root / "data", root / "artifacts", root / "secrets"]:
            for found in [path, *path.rglob("*")]:
                os.chown(found, 1000, 1000)
    running = Stack(
        root,
        compose,
        free_port,
        DATASET="/app/data/my-sounds",
        RETRAIN_EVERY=str(K),
        REPORTING_REFRESH_SECONDS="3",
        MONITORING_MIN_ROWS=str(K),
    )
    try:
        running.up(build=False)
        yield running
    finally:
        running.down(volumes=True)


def test_a_folder_of_sounds_is_served_retrained_and_watched(sound_stack: Stack) -> None:
    api = sound_stack.url("serving")
    model = loopback.get(f"{api}/model").json()
    assert model["preprocessing"]["medium"] == "audio"
    assert model["dataset"] == "my-sounds"
    assert model["metrics"]["holdout"]["accuracy"] >= 0.95
    right = 0
    for index in range(K):
        digit = index % 10
        voice, speed = HELD_OUT_VOICES[index % 2], HELD_OUT_SPEEDS[index % 2]
        sound = speak(WORDS[digit], voice, speed, 50)
        answer = loopback.post(f"{api}/predict", files={"file": ("w.wav", sound)}).json()
        right += answer["label"] == str(digit)
        reply = loopback.post(
            f"{api}/feedback",
            json={"image": base64.b64encode(sound).decode(), "target": str(digit)},
            headers=sound_stack.auth,
        )
        assert reply.status_code == 200, reply.text
    assert right >= 0.85 * K  # voices and speeds the model never heard
    assert reply.json()["retrain_triggered"]
    decided = wait_for(
        lambda: loopback.get(f"{api}/model").json()["last_retrain"], timeout=180, what="a retrain"
    )
    assert decided["decision"] in ("promoted", "rejected"), decided
    exporter = sound_stack.url("reporting-metrics") + "/metrics"
    wait_for(
        lambda: f"ctloop_reporting_snapshot_rows {float(K)}" in loopback.get(exporter).text,
        timeout=120,
        what="a dashboard snapshot of the feedback",
    )
    page = loopback.get(sound_stack.url("webapp") + "/_stcore/health")
    assert page.status_code == 200
