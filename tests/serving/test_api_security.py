"""API token on /feedback and admin routes; CORS limited to the configured origins."""

from __future__ import annotations

import httpx
import pytest

from tests.support.data import copy_workspace
from tests.support.images import b64
from tests.support.processes import LiveServer


@pytest.fixture(scope="module")
def guarded(built, tmp_path_factory):
    root = tmp_path_factory.mktemp("guarded")
    env = {"API_TOKEN": "s3cret", "CORS_ORIGINS": "http://localhost:8081, https://app.example"}
    with LiveServer(copy_workspace(built, root), root / "server.log", **env) as live:
        yield live


def test_feedback_needs_the_token_and_writes_nothing_without_it(
    guarded: LiveServer, samples
) -> None:
    path = guarded.settings.prod_data_path
    before = path.read_bytes()
    body = {"image": b64(samples["1"]), "target": "1"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        reply = httpx.post(f"{guarded.url}/feedback", json=body, headers=headers)
        assert reply.status_code == 401 and reply.json()["error"] == "unauthorized"
        assert "Authorization: Bearer" in reply.json()["detail"]
    assert path.read_bytes() == before
    ok = httpx.post(
        f"{guarded.url}/feedback", json=body, headers={"Authorization": "Bearer s3cret"}
    )
    assert ok.status_code == 200 and ok.json()["rows"] == 1


def test_predict_and_reads_stay_open(guarded: LiveServer, samples) -> None:
    assert (
        httpx.post(f"{guarded.url}/predict", json={"image": b64(samples["1"])}).status_code == 200
    )
    assert httpx.get(f"{guarded.url}/model").status_code == 200


def test_cors_allows_only_the_configured_origins(guarded: LiveServer) -> None:
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{guarded.url}/predict",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )

    allowed = preflight("https://app.example")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    refused = preflight("https://evil.example")
    assert "access-control-allow-origin" not in refused.headers
    simple = httpx.get(f"{guarded.url}/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_without_cors_origins_no_browser_origin_is_allowed(server: LiveServer) -> None:
    reply = httpx.get(f"{server.url}/health", headers={"Origin": "http://localhost:8081"})
    assert reply.status_code == 200 and "access-control-allow-origin" not in reply.headers
