"""The serving app in the test's own process: `create_app(settings)` with its lifespan run, called
through `httpx.ASGITransport` (no server, no port: what needs no real process runs this way).
`in_process` gives async tests an `httpx.AsyncClient`; `in_process_blocking` gives synchronous
tests a client with httpx.Client's calls, run on an event loop in a thread (an anyio portal)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ctloop.config import CoreSettings
from harness.processes import TEST_TOKEN
from serving.api import create_app
from serving.settings import ServingSettings

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


def serving_settings(core: CoreSettings, secrets_dir: Path, **overrides) -> ServingSettings:
    """Serving settings over a workspace (harness.data.copy_workspace), with the test token
    and the feedback rate limit out of the way unless `overrides` say otherwise."""
    values = {
        "data_dir": core.data_dir,
        "artifacts_dir": core.artifacts_dir,
        "secrets_dir": secrets_dir,
        "api_token": TEST_TOKEN,
        "feedback_rate_limit": "",
        "model_poll_seconds": 0.2,
        **overrides,
    }
    return ServingSettings(**values)


@contextlib.asynccontextmanager
async def in_process(
    settings: ServingSettings, client: tuple[str, int] = ("127.0.0.1", 40000)
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of the app of `settings`, between its lifespan's start and its end."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://serving.test", timeout=60
        ) as http:
            yield http


class BlockingClient:
    """httpx.Client's request methods over an in-process AsyncClient; it keeps the status of every
    reply it got (`statuses`), so a module can check that none was a server error."""

    def __init__(self, portal: BlockingPortal, http: httpx.AsyncClient) -> None:
        self._portal, self._http = portal, http
        self.statuses: list[int] = []

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        content = kwargs.get("content")
        if content is not None and not isinstance(content, (bytes, str)):
            kwargs["content"] = _asynchronous(content)  # a generator: a body without a length
        call = functools.partial(self._http.request, method, url, **kwargs)
        reply = self._portal.call(call)
        self.statuses.append(reply.status_code)
        return reply

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


async def _asynchronous(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@contextlib.contextmanager
def in_process_blocking(settings: ServingSettings) -> Iterator[BlockingClient]:
    """`in_process(settings)` for synchronous tests, sending the test token."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(in_process(settings)) as http,
    ):
        http.headers.update(AUTH)
        yield BlockingClient(portal, http)
