"""Fixtures for the webapp tests: real serving APIs on loopback and the page under AppTest."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
from streamlit.testing.v1 import AppTest

from ctloop.config import CoreSettings
from harness.data import copy_workspace
from harness.processes import (
    TEST_TOKEN,
    WEBAPP_ENV,
    WEBAPP_PAGE,
    LiveServer,
    free_port,
)


@pytest.fixture(scope="module")
def api(built: CoreSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real serving API (one worker) on its own copy of the data; no retrain comes due. The
    page's tests send typical samples, which the test-sized model reads right too (the browser's
    drawn digits are read by the product's model: test_webapp_browser's `stack`)."""
    env = {"RETRAIN_EVERY": "1000", "SERVING_MAX_BODY_BYTES": "300000"}
    root = tmp_path_factory.mktemp("webapp-api")
    with LiveServer(copy_workspace(built, root), root / "server.log", **env) as server:
        yield server


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Callable[..., AppTest]:
    """`page(api_url, **env)`: the page under AppTest, with these settings in its environment."""
    for name in WEBAPP_ENV:
        monkeypatch.delenv(name, raising=False)
    # AppTest runs the page as __main__ and leaves it there: a later test's "spawn" child would
    # run the page again as its main module (and fail). The worker's own is put back.
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    secrets_dir = tmp_path / "no-secrets"

    def make(api_url: str, **env: str) -> AppTest:
        monkeypatch.setenv("WEBAPP_API_URL", api_url)
        env.setdefault("API_TOKEN", TEST_TOKEN)  # the live APIs' token; "" sends none
        env.setdefault("SECRETS_DIR", str(secrets_dir))  # no generated token to fall back on
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return AppTest.from_file(WEBAPP_PAGE, default_timeout=30)

    return make


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback server that accepts connections and never answers (a stuck API)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()
