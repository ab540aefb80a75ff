"""uvicorn's httptools protocol with header and body timeouts (slow clients cannot hold workers).

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but nothing bounds how
long a client may take to send a request's headers or its body: a client that opens connections
and trickles bytes (slowloris) holds them, and the memory behind them, for as long as it likes.
This protocol arms a timer when a connection opens or a request begins, cancels it when the
headers are complete, arms a second one until the body is complete, and on expiry answers 408
(the stack's JSON error body) if no response has started, then closes the connection.

Selected with `uvicorn.run(..., http=TimedHttpToolsProtocol)` by `python -m serving`; the limits
come from SERVING_HEADER_TIMEOUT_SECONDS and SERVING_BODY_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.settings import get_serving_settings


class TimedHttpToolsProtocol(HttpToolsProtocol):
    # The override uvicorn's HttpToolsProtocol makes too: asyncio's BaseProtocol declares a
    # BaseTransport, and a server's connection is always an asyncio.Transport.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        settings = get_serving_settings()  # read once per process
        self.header_timeout = settings.header_timeout_seconds
        self.body_timeout = settings.body_timeout_seconds
        super().connection_made(transport)
        self._arm(self.header_timeout, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm(self.header_timeout, "headers")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        self._arm(self.body_timeout, "body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float, part: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, part, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, part: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        started = self.cycle is not None and self.cycle.response_started
        if not started:
            body = json.dumps(
                {
                    "detail": f"the request's {part} did not arrive within {seconds:g} s",
                    "error": "request_timeout",
                }
            ).encode()
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()
