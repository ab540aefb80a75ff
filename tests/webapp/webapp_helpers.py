"""Helpers shared by the webapp tests (a unique module name: conftest.py is not importable)."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from helpers import make_settings
from live_server import LiveServer, free_port  # a real `python -m serving` on a free port

from ctloop.config import CoreSettings

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "webapp" / "app.py"
ARTIFACTS = REPO / "tests" / "artifacts"

__all__ = ["LiveServer", "free_port", "private_workspace", "prod_rows"]

WEBAPP_ENV = (
    "API_URL",
    "API_TOKEN",
    "PUBLIC_API_URL",
    "DASHBOARD_URL",
    "REQUEST_TIMEOUT_SECONDS",
    "STATUS_TIMEOUT_SECONDS",
    "RETRAIN_WAIT_SECONDS",
    "MAX_UPLOAD_MB",
)


def private_workspace(built: CoreSettings, root: Path) -> CoreSettings:
    """A copy of the session's reference data and v0001 that one server may change."""
    shutil.copytree(built.data_dir, root / "data")
    shutil.copytree(built.artifacts_dir, root / "artifacts")
    return make_settings(root)


def prod_rows(settings: CoreSettings) -> list[dict[str, str]]:
    """The rows of prod_data.csv (none if it does not exist yet)."""
    if not settings.prod_data_path.exists():
        return []
    with settings.prod_data_path.open(newline="") as handle:
        return list(csv.DictReader(handle))


class StreamlitServer:
    """`streamlit run webapp/app.py` in its own process group on a free loopback port."""

    def __init__(self, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {**os.environ, "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none", **env}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> StreamlitServer:
        command = [
            sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.port", str(self.port), "--server.address", "127.0.0.1",
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"streamlit exited with {self.process.returncode}:\n{self.logs()}"
                )
            try:
                if httpx.get(f"{self.url}/_stcore/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"streamlit did not answer within {timeout} s:\n{self.logs()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> StreamlitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
