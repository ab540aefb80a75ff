"""The stack as a stranger and a failing machine meet it, through Docker Compose (v2 in CI):
locked-down containers, writes that need the generated secrets, absurd images that cost nothing,
and a broken pointer or a read-only data/ that leave /predict serving."""

from __future__ import annotations

import base64
import json
import os
import stat
import struct
import time
import zlib

import pytest

from harness import loopback
from harness.compose import Stack
from harness.processes import wait_for
from tests.e2e.conftest import FIGURES

pytestmark = pytest.mark.docker

SERVICES = ("serving-api", "webapp", "reporting", "mlflow", "mlflow-mirror")


def test_every_container_is_locked_down(stack: Stack) -> None:
    for service in SERVICES:
        config = stack.container(service)["HostConfig"]
        assert config["CapDrop"] == ["ALL"] and not config["CapAdd"], service
        assert "no-new-privileges:true" in config["SecurityOpt"], service
        assert config["ReadonlyRootfs"] is True, service
        assert config["Memory"] > 0 and config["PidsLimit"] > 0, service
        for bindings in config["PortBindings"].values():
            assert all(binding["HostIp"] == "127.0.0.1" for binding in bindings), service


def test_writes_need_the_token_the_first_start_generated(stack: Stack, samples) -> None:
    token_file = stack.root / "secrets" / "api_token"
    assert not stat.S_IMODE(token_file.stat().st_mode) & 0o007, "not readable by others"
    body = {"image": base64.b64encode(samples["2"]).decode(), "target": "2"}
    rows = (stack.root / "data" / "prod_data.csv").read_bytes()
    refused = loopback.post(stack.url("serving") + "/feedback", json=body)
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    assert loopback.post(stack.url("serving") + "/model/rollback").status_code == 401
    assert (stack.root / "data" / "prod_data.csv").read_bytes() == rows


def test_the_dashboard_is_readable_but_refuses_writes_without_its_secret(stack: Stack) -> None:
    api = stack.url("reporting") + "/api"
    projects = loopback.get(api + "/projects").json()
    assert projects, "readable without a secret"
    project = projects[0]["id"]
    refused = loopback.delete(f"{api}/projects/{project}")
    assert refused.status_code in (401, 403)
    wrong = loopback.delete(f"{api}/projects/{project}", headers={"evidently-secret": "guess"})
    assert wrong.status_code in (401, 403)
    assert [p["id"] for p in loopback.get(api + "/projects").json()] == [project]


def long_png(width: int) -> bytes:
    """A width x 1 grey PNG: 16 KB for 16,777,216 pixels."""
    compressed = zlib.compress(b"\0" * (width + 1), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", compressed)
        + chunk(b"IEND", b"")
    )


def test_absurd_images_are_refused_and_cost_the_container_nothing(stack: Stack) -> None:
    before = stack.memory_mib("serving-api")
    for width in (16_777_216, 16_777_215, 16_777_214, 16_777_213):
        image = base64.b64encode(long_png(width)).decode()
        reply = loopback.post(stack.url("serving") + "/predict", json={"image": image})
        assert reply.status_code == 413 and reply.json()["error"] == "image_too_large"
    after = stack.memory_mib("serving-api")
    FIGURES["serving_memory_mib_before_after_absurd_images"] = [round(before), round(after)]
    assert after - before < 100, f"{before:.0f} -> {after:.0f} MiB"


def restart_api(stack: Stack) -> None:
    result = stack.run("restart", "serving-api", timeout=300)
    assert result.returncode == 0, result.stderr
    wait_for(
        lambda: loopback.get(stack.url("serving") + "/ready", timeout=2).status_code == 200,
        180,
        0.5,
        "the API to be ready again",
    )


def test_a_restart_on_a_truncated_pointer_and_a_garbage_row_serves_within_30_s(
    stack: Stack, samples
) -> None:
    """A power cut mid-write of current.json and a line of garbage in prod_data.csv, then the
    API started again (`start` runs `init` first, as the API depends on it): it serves within
    30 s, the pointer is rebuilt from the history and feedback goes on past the garbage."""
    pointer = stack.root / "artifacts" / "current.json"
    prod = stack.root / "data" / "prod_data.csv"
    served = loopback.get(stack.url("serving") + "/model").json()["version"]
    rows = prod.read_bytes()
    image = base64.b64encode(samples["6"]).decode()
    try:
        assert stack.run("stop", "serving-api", timeout=300).returncode == 0
        pointer.write_bytes(pointer.read_bytes()[:20])
        with prod.open("ab") as handle:
            handle.write(b"0.1,0.2,not a row\n")
        started = time.monotonic()
        result = stack.run("start", "serving-api", timeout=300)
        assert result.returncode == 0, result.stderr
        wait_for(
            lambda: (
                loopback.post(stack.url("serving") + "/predict", json={"image": image}).is_success
            ),
            120,
            0.2,
            "predictions after the restart",
        )
        FIGURES["restart_on_corrupt_pointer_to_predict_seconds"] = round(
            time.monotonic() - started, 1
        )
        assert time.monotonic() - started < 30
        reply = loopback.post(stack.url("serving") + "/predict", json={"image": image}).json()
        assert reply["model_version"] == served
        assert json.loads(pointer.read_bytes())["version"] == served, "rebuilt by init"
        feedback = loopback.post(
            stack.url("serving") + "/feedback",
            json={"image": image, "target": "6"},
            headers=stack.auth,
        )
        assert feedback.status_code == 200, feedback.text
    finally:
        assert stack.run("stop", "serving-api", timeout=300).returncode == 0
        prod.write_bytes(rows)  # the garbage line out again, for the tests that follow
        restart_api(stack)
    assert loopback.get(stack.url("serving") + "/ready").json()["status"] == "ready"


def test_a_read_only_data_folder_refuses_feedback_and_keeps_predicting(
    stack: Stack, samples
) -> None:
    data = stack.root / "data"
    mode = stat.S_IMODE(data.stat().st_mode)
    prod = data / "prod_data.csv"
    file_mode = stat.S_IMODE(prod.stat().st_mode)
    try:
        os.chmod(data, 0o555)  # noqa: S103 - with ACLs this is the mask: app may read, not write
        os.chmod(prod, 0o444)
        restart_api(stack)
        image = base64.b64encode(samples["9"]).decode()
        assert loopback.post(stack.url("serving") + "/predict", json={"image": image}).is_success
        refused = loopback.post(
            stack.url("serving") + "/feedback",
            json={"image": image, "target": "9"},
            headers=stack.auth,
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "feedback_unavailable"
        assert "prod_data.csv" in refused.json()["detail"]
        ready = loopback.get(stack.url("serving") + "/ready").json()
        assert ready["status"] == "degraded"
    finally:
        os.chmod(data, mode)
        os.chmod(prod, file_mode)
        restart_api(stack)
