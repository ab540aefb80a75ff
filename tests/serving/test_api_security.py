"""API token on /feedback and admin routes; CORS limited to the configured origins."""

from __future__ import annotations

import httpx
import pytest

from ctloop.prod_data import ProductionData
from harness import loopback
from harness.data import copy_workspace
from harness.images import b64
from harness.processes import LiveServer


@pytest.fixture(scope="module")
def guarded(built, tmp_path_factory):
    root = tmp_path_factory.mktemp("guarded")
    env = {
        "API_TOKEN": "s3cret",
        "SERVING_CORS_ORIGINS": "http://localhost:8081, https://app.example",
    }
    with LiveServer(copy_workspace(built, root), root / "server.log", **env) as live:
        yield live


def test_feedback_needs_the_token_and_writes_nothing_without_it(
    guarded: LiveServer, samples
) -> None:
    path = guarded.settings.prod_data_path
    before = path.read_bytes()
    body = {"image": b64(samples["1"]), "target": "1"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        reply = loopback.post(f"{guarded.url}/feedback", json=body, headers=headers)
        assert reply.status_code == 401 and reply.json()["error"] == "unauthorized"
        assert "Authorization: Bearer" in reply.json()["detail"]
    assert path.read_bytes() == before
    ok = loopback.post(
        f"{guarded.url}/feedback", json=body, headers={"Authorization": "Bearer s3cret"}
    )
    assert ok.status_code == 200 and ok.json()["rows"] == 1


def test_predict_and_reads_stay_open(guarded: LiveServer, samples) -> None:
    assert (
        loopback.post(f"{guarded.url}/predict", json={"image": b64(samples["1"])}).status_code
        == 200
    )
    assert loopback.get(f"{guarded.url}/model").status_code == 200


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
    simple = loopback.get(f"{guarded.url}/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_without_cors_origins_no_browser_origin_is_allowed(server: LiveServer) -> None:
    reply = loopback.get(f"{server.url}/health", headers={"Origin": "http://localhost:8081"})
    assert reply.status_code == 200 and "access-control-allow-origin" not in reply.headers


def test_without_a_configured_token_one_is_generated_and_required(built, tmp_path, samples):
    """Secure by default, with no step for the user: the first start writes a token to
    SECRETS_DIR/api_token (owner and group only) and /feedback asks for it."""
    settings = copy_workspace(built, tmp_path)
    with LiveServer(settings, tmp_path / "server.log", workers=2, API_TOKEN="") as server:
        token_file = tmp_path / f"secrets-{server.port}" / "api_token"
        token = token_file.read_text().strip()
        assert len(token) >= 40 and token != server.token
        assert oct(token_file.stat().st_mode & 0o777) == "0o640"
        body = {"image": b64(samples["1"]), "target": "1"}
        refused = [loopback.post(f"{server.url}/feedback", json=body) for _ in range(4)]
        assert {reply.status_code for reply in refused} == {401}, "both workers ask for it"
        ok = loopback.post(
            f"{server.url}/feedback", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert ok.status_code == 200
        assert loopback.post(f"{server.url}/model/rollback").status_code == 401


def test_feedback_is_rate_limited_per_client_and_nothing_is_written_beyond(
    built, tmp_path, samples
) -> None:
    """A client is its address and its credential: a new X-Client-ID (or X-Forwarded-For) per
    request used to give it a fresh budget each time (60 of 60 accepted)."""
    settings = copy_workspace(built, tmp_path)
    env = {"SERVING_FEEDBACK_RATE_LIMIT": "3/minute"}
    with LiveServer(settings, tmp_path / "server.log", **env) as server:
        body = {"image": b64(samples["1"]), "target": "1"}
        with httpx.Client(base_url=server.url, headers=server.auth) as http:
            replies = [
                http.post(
                    "/feedback",
                    json=body,
                    headers={"X-Client-ID": f"tab {n}", "X-Forwarded-For": f"198.51.100.{n}"},
                )
                for n in range(5)
            ]
        # Another address (the loopback range is the machine's own) has its own budget.
        other_address = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(
            base_url=server.url, headers=server.auth, transport=other_address
        ) as http:
            other = http.post("/feedback", json=body)
        assert [reply.status_code for reply in replies] == [200, 200, 200, 429, 429]
        limited = replies[3]
        assert limited.json()["error"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert other.status_code == 200, "another address has its own budget"
        rows = ProductionData(settings.prod_data_path, 32).count_rows_on_disk()
        assert rows == 4


def test_the_rate_limit_key_holds_a_hash_of_the_token_never_the_token() -> None:
    from starlette.requests import Request

    from serving.ratelimit import client_key

    def key(authorization: str, client_id: str) -> str:
        headers = [(b"authorization", authorization.encode()), (b"x-client-id", client_id.encode())]
        scope = {"type": "http", "headers": headers, "client": ("192.0.2.1", 5000)}
        return client_key(Request(scope))

    first = key("Bearer s3cret", "a")
    assert first.startswith("192.0.2.1|") and "s3cret" not in first
    assert key("Bearer s3cret", "b") == first, "X-Client-ID is not part of the key"
    assert key("Bearer other", "a") != first


def test_slow_clients_get_408_and_are_disconnected(built, tmp_path) -> None:
    """Headers or a body trickled byte by byte (slowloris) cannot hold a worker."""
    import socket
    import time

    settings = copy_workspace(built, tmp_path)
    env = {"SERVING_HEADER_TIMEOUT_SECONDS": "1", "SERVING_BODY_TIMEOUT_SECONDS": "1"}
    with LiveServer(settings, tmp_path / "server.log", **env) as server:
        for opening in (
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ",  # headers that never end
            b"POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n{",  # a body that never comes
            b"",  # a connection that never says anything
        ):
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
                sock.sendall(opening)
                started = time.monotonic()
                answer = sock.recv(4096)
                waited = time.monotonic() - started
                assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
                assert b'"error": "request_timeout"' in answer
                assert sock.recv(4096) == b"", "the connection is closed"
                assert waited < 20
        assert loopback.get(f"{server.url}/health").status_code == 200
