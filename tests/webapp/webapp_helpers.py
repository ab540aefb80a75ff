"""Helpers shared by the webapp tests (a unique module name: conftest.py is not importable)."""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

from helpers import make_settings
from live_server import LiveServer, ServerProcess, free_port

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


class StreamlitServer(ServerProcess):
    """`streamlit run webapp/app.py` in its own process group on a free loopback port."""

    name = "streamlit"
    health = "/_stcore/health"

    def __init__(self, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.port", str(self.port), "--server.address", "127.0.0.1",
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
        env = {**os.environ, "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none", **env}
        super().__init__(command, env, log_path)
