"""The API client on its own, against scripted replies (httpx.MockTransport): what it sends, how
it parses, and how each failure becomes an ApiError. The page's and the simulator's tests run it
against real APIs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from serving_client.client import ApiClient, ApiError
from serving_client.contract import (
    BatchPredictResponse,
    PredictResponse,
    PredictResponseWithGrid,
    VersionSummary,
)

URL = "http://api.test:8080"
PROBABILITIES = {"3": 0.9, "8": 0.1}
RECEIPT = {
    "rows": 1, "retrain_triggered": False, "rows_until_retrain": 19, "retrain_every": 20,
    "target": "3", "prediction": "3", "model_version": "v1", "request_id": "r",
}  # fmt: skip


def prediction(**extra) -> dict:
    return {"label": "3", "confidence": 0.9, "probabilities": PROBABILITIES, **extra}


def model_info(version: str = "v0001", last_retrain: dict | None = None) -> dict:
    return {
        "version": version, "created_at": "2026-01-01T00:00:00Z", "parent": None,
        "classes": ["3", "8"], "metrics": {"holdout": {"accuracy": 0.97}}, "training": {},
        "retrain_every": 20, "promotion_policy": "gate", "gate_rule": "...",
        "production_rows": 40, "rows_since_last_retrain": 0, "rows_until_retrain": 20,
        "retrain_backlog": 0, "last_retrain": last_retrain,
    }  # fmt: skip


def client_of(handler: Callable[[httpx.Request], httpx.Response], **options) -> ApiClient:
    return ApiClient(
        URL, options.pop("token", "s3cret"), transport=httpx.MockTransport(handler), **options
    )


def answering(*replies: httpx.Response) -> tuple[Callable, list[httpx.Request]]:
    """A handler that gives `replies` in turn (the last one again), and the requests it got."""
    seen: list[httpx.Request] = []
    queue: Iterator[httpx.Response] = iter(replies)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(queue, replies[-1])

    return handler, seen


def test_every_call_carries_the_token_a_request_id_and_the_client_id() -> None:
    handler, seen = answering(
        httpx.Response(200, json=prediction(model_version="v1", request_id="r"))
    )
    with client_of(handler, user_agent="the-test") as api:
        answer = api.predict_base64(b"\x89PNG", client_id="browser-7")
        api.predict_base64(b"\x89PNG")
    assert isinstance(answer, PredictResponse) and answer.top(1) == [("3", 0.9)]
    first, second = seen
    assert first.headers["authorization"] == "Bearer s3cret"
    assert first.headers["user-agent"] == "the-test"
    assert first.headers["x-client-id"] == "browser-7" and "x-client-id" not in second.headers
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert json.loads(first.content) == {"image": base64.b64encode(b"\x89PNG").decode()}


def test_bodies_follow_the_contract() -> None:
    handler, seen = answering(
        httpx.Response(
            200, json={"predictions": [prediction()] * 2, "model_version": "v1", "request_id": "r"}
        ),
        httpx.Response(200, json=prediction(model_version="v1", request_id="r", grid=[[0.0]])),
        httpx.Response(200, json=RECEIPT),
    )
    with client_of(handler, token=None) as api:
        batch = api.predict_batch([b"a", b"b"])
        seen_grid = api.predict(b"png", "three.png", "image/png", grid=True)
        receipt = api.feedback_base64(b"png", "3", "8")
        api.feedback(b"png", "3", filename="three.png")
    assert isinstance(batch, BatchPredictResponse) and len(batch.predictions) == 2
    assert isinstance(seen_grid, PredictResponseWithGrid) and seen_grid.grid == [[0.0]]
    assert receipt.rows == 1 and not receipt.retrain_triggered
    batch_request, grid_request, feedback_request, upload_request = seen
    assert json.loads(batch_request.content) == {"images": ["YQ==", "Yg=="]}
    assert grid_request.url.params["grid"] == "true"
    assert b'filename="three.png"' in grid_request.content
    assert json.loads(feedback_request.content) == {
        "image": "cG5n",
        "target": "3",
        "prediction": "8",
    }
    assert b'name="target"' in upload_request.content
    assert b'name="prediction"' not in upload_request.content, "no prediction: none sent"
    assert "authorization" not in grid_request.headers


def test_an_error_status_keeps_the_apis_code_message_and_request_id() -> None:
    body = {"detail": "'eleven' is not one of the model's classes", "error": "unknown_class"}
    handler, _ = answering(httpx.Response(422, json=body, headers={"x-request-id": "abc123"}))
    with client_of(handler) as api, pytest.raises(ApiError) as refused:
        api.feedback_base64(b"png", "eleven")
    problem = refused.value
    assert (problem.kind, problem.status, problem.code) == ("refused", 422, "unknown_class")
    assert problem.detail == body["detail"] and problem.request_id == "abc123"
    assert (problem.method, problem.path, problem.url) == ("POST", "/feedback", f"{URL}/feedback")
    assert problem.token_sent
    assert str(problem) == (
        f"POST {URL}/feedback: HTTP 422 unknown_class: 'eleven' is not one of the model's "
        "classes (request id abc123)"
    )

    handler, seen = answering(
        httpx.Response(503, json={"detail": "no model", "error": "model_not_ready"})
    )
    with client_of(handler) as api, pytest.raises(ApiError) as failed:
        api.model()
    assert failed.value.kind == "server" and failed.value.code == "model_not_ready"
    assert failed.value.request_id == seen[0].headers["x-request-id"], "ours, when it sent none"


def test_a_reply_that_is_not_the_apis_is_an_invalid_answer() -> None:
    handler, _ = answering(httpx.Response(200, text="<html>a router's page</html>",
                                          headers={"content-type": "text/html"}))  # fmt: skip
    with client_of(handler) as api, pytest.raises(ApiError) as wrong:
        api.model()
    problem = wrong.value
    assert (problem.kind, problem.status, problem.path) == ("invalid_answer", 200, "/model")
    assert problem.content_type == "text/html" and problem.request_id is None
    assert "is not an answer of the serving API" in str(problem)

    handler, _ = answering(httpx.Response(404, text="Not Found"))
    with client_of(handler) as api, pytest.raises(ApiError) as missing:
        api.versions()
    assert missing.value.kind == "refused" and missing.value.code is None
    assert missing.value.detail == ""


def test_a_429_is_waited_out_within_the_clients_patience() -> None:
    busy = httpx.Response(429, json={"detail": "slow down", "error": "rate_limited"},
                          headers={"retry-after": "0"})  # fmt: skip
    versions = [{"version": "v0001", "created_at": "t", "parent": None, "current": True,
                 "training_rows": 10, "holdout_accuracy": 0.9, "holdout_macro_f1": 0.9,
                 "trigger_rows": None, "gate": None}]  # fmt: skip
    handler, seen = answering(busy, busy, httpx.Response(200, json=versions))
    with client_of(handler, patience=5) as api:
        (version,) = api.versions()
    assert isinstance(version, VersionSummary) and version.current and len(seen) == 3

    handler, seen = answering(busy, httpx.Response(200, json=versions))
    with client_of(handler) as api, pytest.raises(ApiError) as refused:
        api.versions()
    assert refused.value.status == 429 and len(seen) == 1, "no patience: refused at once"


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "unreachable"),
        (httpx.ConnectTimeout("timed out"), "unreachable"),
        (httpx.ReadTimeout("timed out"), "timeout"),
        (httpx.RemoteProtocolError("Server disconnected"), "disconnected"),
    ],
)
def test_network_failures_say_whether_the_request_may_have_arrived(raised, kind) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise raised

    with client_of(handler, timeout=2.5) as api, pytest.raises(ApiError) as failed:
        api.predict(b"png")
    problem = failed.value
    assert problem.kind == kind and problem.status is None
    if kind == "unreachable":
        assert problem.request_id is None, "nothing reached the API: no id to look for"
        assert "Errno" not in problem.reason
    else:
        assert problem.request_id is not None
    if kind == "timeout":
        assert str(problem) == f"POST {URL}/predict: no reply within 2.5 s"


def test_waiting_for_a_retrain_waits_for_the_promoted_version_to_be_served() -> None:
    promoted = {"trigger_rows": 40, "decision": "promoted", "version": "v0002"}
    handler, seen = answering(
        httpx.Response(200, json=model_info("v0001", {"trigger_rows": 20, "decision": "rejected"})),
        httpx.Response(503, json={"detail": "restarting", "error": "model_not_ready"}),
        httpx.Response(200, json=model_info("v0001", promoted)),  # logged, not swapped yet
        httpx.Response(200, json=model_info("v0002", promoted)),
    )
    with client_of(handler) as api:
        outcome, served = api.wait_for_retrain(40, wait_seconds=10, interval=0)
    assert outcome is not None and outcome.decision == "promoted" and outcome.version == "v0002"
    assert served is not None and served.version == "v0002" and served.holdout_accuracy == 0.97
    assert len(seen) == 4

    handler, _ = answering(httpx.Response(200, json=model_info("v0001")))
    with client_of(handler) as api:
        outcome, served = api.wait_for_retrain(40, wait_seconds=0)
    assert outcome is None and served is not None and served.retrain_outcome is None
