"""The request middleware: request id, body size limit, latency histogram, one JSON log line.

A plain ASGI middleware: Starlette's BaseHTTPMiddleware costs far more per request.
"""

from __future__ import annotations

import json
import re
import secrets
import time

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ctloop.logs import JsonLineWriter
from serving.logs import ACCESS_LOG
from serving.metrics import LATENCY, VERSION_LATENCY

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class BodyTooLargeError(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than the limit of {limit:,} bytes")
        self.limit = limit


class RequestMiddleware:
    """Request id, body size limit, latency histogram, request counter, one JSON log line.

    A plain ASGI middleware: Starlette's BaseHTTPMiddleware costs far more per request. The body
    limit is ours rather than FastAPI's `max_body_size` because Starlette's limiter answers an
    over-long Content-Length with a plain-text 413 that replaces the app's JSON error.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._latency: dict[tuple[str, str, int], Histogram] = {}  # children, looked up once
        self._by_version: dict[tuple[str, bool], Histogram] = {}
        self._access: JsonLineWriter | None = None  # made in the worker, after logging is set up

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # The id is always the server's own: unique, and safe wherever it is stored (a client's
        # id could repeat, or start a spreadsheet formula in prod_data.csv). A client's own id
        # is kept in the request's log line, to match the two.
        request_id = secrets.token_hex(16)
        header = (b"x-request-id", request_id.encode())
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        try:
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await _too_large(send_with_id, self.max_body_bytes, request_id)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            path = route.path if route is not None else "unmatched"
            key = (path, scope["method"], status)
            child = self._latency.get(key)
            if child is None:
                child = self._latency[key] = LATENCY.labels(path, scope["method"], str(status))
            child.observe(elapsed)
            version = state.get("model_version")
            if version is not None and path == "/predict":
                version_key = (version, status >= 500)
                child = self._by_version.get(version_key)
                if child is None:
                    outcome = "error" if status >= 500 else "ok"
                    child = self._by_version[version_key] = VERSION_LATENCY.labels(version, outcome)
                child.observe(elapsed)
            if self._access is None:
                self._access = JsonLineWriter(ACCESS_LOG)
            if self._access.enabled:
                self._access.info(
                    "request",
                    {
                        "event": "request",
                        "request_id": request_id,
                        "client_request_id": _client_request_id(scope),
                        "method": scope["method"],
                        "route": path,
                        "status": status,
                        "latency_ms": round(elapsed * 1000, 3),
                        "model_version": state.get("model_version"),
                    },
                )

    def _limited(self, receive: Receive) -> Receive:
        """Count body bytes as they arrive, for bodies sent without a Content-Length."""
        limit, received = self.max_body_bytes, 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        return receive_limited


def _client_request_id(scope: Scope) -> str | None:
    offered = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
    if offered is None:
        return None
    text = offered.decode("latin-1")
    return text if REQUEST_ID.match(text) else None


async def _too_large(send: Send, limit: int, request_id: str) -> None:
    body = json.dumps(
        {
            "detail": f"the request body is larger than the limit of {limit:,} bytes",
            "error": "body_too_large",
            "request_id": request_id,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
