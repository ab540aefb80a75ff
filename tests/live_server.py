"""A real serving API in a subprocess on a free loopback port, for integration tests.

ServerProcess also starts the servers of the benchmarks (bench/procs.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ctloop.config import CoreSettings

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """A server in its own process group, logging to a file, ready when `health` answers 200."""

    name = "server"
    health = "/"
    start_timeout = 60.0

    def __init__(self, command: list[str], env: dict, log_path: Path) -> None:
        self.command, self.env, self.log_path = command, env, log_path
        self.process: subprocess.Popen | None = None
        self.ready_seconds: float | None = None  # start to first 200 from `health`

    def start(self, timeout: float | None = None):
        timeout = timeout or self.start_timeout
        started = time.perf_counter()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"{self.name} exited with {code}:\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}{self.health}", timeout=1).status_code == 200:
                    self.ready_seconds = time.perf_counter() - started
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout} s:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def kill(self) -> None:
        """SIGKILL the whole process group (a launcher and its workers), as a crash would."""
        self.stop(signal.SIGKILL)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LiveServer(ServerProcess):
    """`python -m serving` (the production launcher) with its own settings."""

    name = "the serving API"
    health = "/ready"

    def __init__(
        self, settings: CoreSettings, log_path: Path, workers: int = 1, **env: str
    ) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [sys.executable, "-m", "serving"],
            {
                **os.environ,
                "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'scripts'}",
                "DATA_DIR": str(settings.data_dir),
                "ARTIFACTS_DIR": str(settings.artifacts_dir),
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "WORKERS": str(workers),
                "MODEL_POLL_SECONDS": "0.2",
                "PROMETHEUS_MULTIPROC_DIR": str(log_path.parent / f"metrics-{self.port}"),
                **env,
            },
            log_path,
        )


def trainer_pids(artifacts_dir: Path) -> list[int]:
    """Running `python -m ctloop retrain` processes working on this artifacts folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = f"ARTIFACTS_DIR={artifacts_dir}".encode() in environ
        if b"retrain" in command and b"ctloop" in command and ours:
            found.append(int(entry.name))
    return found


def wait_for(condition, timeout: float = 60, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
