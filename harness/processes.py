"""Real servers in subprocesses on free loopback ports, and waiting for things to happen.

The tests start their own servers (so they run beside a stack that is up); the benchmarks
(bench/) start theirs with the same classes.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from ctloop.config import CoreSettings
from harness import loopback
from webapp.settings import WebappSettings

REPO = Path(__file__).resolve().parents[1]
WEBAPP_PAGE = REPO / "webapp" / "app.py"
# The page's settings: cleared before each page test so that the machine's own never leak in.
WEBAPP_ENV = WebappSettings.every_env_name()


def free_port() -> int:
    """A port nothing listens on right now (bind port 0, read it, release it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float = 60, interval: float = 0.1, what: str = "condition"):
    """Poll `condition` until it returns a truthy value and return it; AssertionError on timeout.

    A condition that raises an HTTP, OS, value or key error counts as not met yet (a server
    starting, a reply without the field yet).
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, OSError, ValueError, KeyError):
            value = condition()
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def child_environment(**extra: str) -> dict[str, str]:
    """This environment for a child process, Evidently's and MLflow's telemetry off, plus
    `extra`."""
    return {**os.environ, "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true", **extra}


class ServerProcess:
    """A server in its own process group, logging to a file, ready when `health` answers 200."""

    name = "server"
    health = "/"
    start_timeout = 60.0
    url = ""

    def __init__(self, command: list[str], env: dict, log_path: Path, cwd: Path = REPO) -> None:
        self.command, self.env, self.log_path, self.cwd = command, env, log_path, cwd
        self.process: subprocess.Popen | None = None
        self.ready_seconds: float | None = None  # start to first 200 from `health`

    def start(self, timeout: float | None = None):
        timeout = timeout or self.start_timeout
        started = time.perf_counter()
        self.process = spawn(self.command, self.env, self.log_path, self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"{self.name} exited with {code}:\n{self.logs()}")
            try:
                if loopback.get(f"{self.url}{self.health}", timeout=1).status_code == 200:
                    self.ready_seconds = time.perf_counter() - started
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout} s:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop_group(self.process, sig=sig)

    def kill(self) -> None:
        """SIGKILL the whole process group (a launcher and its workers), as a crash would."""
        self.stop(signal.SIGKILL)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


TEST_TOKEN = "test-token-0123456789"  # noqa: S105 - the throwaway token of test servers


class LiveServer(ServerProcess):
    """`python -m serving` (the production launcher) with its own settings.

    Its API token is TEST_TOKEN unless API_TOKEN is given (`auth` holds the header), and the
    feedback rate limit is out of the way unless SERVING_FEEDBACK_RATE_LIMIT is given.
    """

    name = "the serving API"
    health = "/ready"

    def __init__(
        self, settings: CoreSettings, log_path: Path, workers: int = 1, **env: str
    ) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = env.setdefault("API_TOKEN", TEST_TOKEN)
        self.auth = {"Authorization": f"Bearer {self.token}"}
        env.setdefault("SERVING_FEEDBACK_RATE_LIMIT", "100000/second")
        defaults = {
            "DATA_DIR": str(settings.data_dir),
            "ARTIFACTS_DIR": str(settings.artifacts_dir),
            "SECRETS_DIR": str(log_path.parent / f"secrets-{self.port}"),
            "SERVING_HOST": "127.0.0.1",
            "SERVING_PORT": str(self.port),
            "SERVING_WORKERS": str(workers),
            "SERVING_MODEL_POLL_SECONDS": "0.2",
            "SERVING_TRAINER_CHECK_SECONDS": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(log_path.parent / f"metrics-{self.port}"),
        }
        super().__init__(
            [sys.executable, "-m", "serving"], child_environment(**{**defaults, **env}), log_path
        )


class ReportingServer(ServerProcess):
    """The dashboard (`python -m reporting.serve`: `evidently ui` and its refresher)."""

    name = "the reporting service"
    health = "/api/version"
    start_timeout = 120.0  # imports Evidently and computes a first snapshot

    def __init__(self, data_dir: Path, log_path: Path, **env: str) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"  # the exporter
        defaults = {
            "DATA_DIR": str(data_dir),
            "SECRETS_DIR": str(log_path.parent / f"secrets-{self.port}"),
            "REPORTING_HOST": "127.0.0.1",
            "REPORTING_PORT": str(self.port),
            "REPORTING_METRICS_PORT": str(self.metrics_port),
        }
        super().__init__(
            [sys.executable, "-m", "reporting.serve"],
            child_environment(**{**defaults, **env}),
            log_path,
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        super().stop(sig)
        for pid in ui_pids(self.log_path):  # the UI runs in its own session
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class MlflowServer(ServerProcess):
    """`python -m tracking.server` (MLflow with basic authentication) on its own folder; the same
    `port` and `home` after a restart give the same server back."""

    name = "the MLflow server"
    health = "/health"
    start_timeout = 120.0

    def __init__(self, home: Path, log_path: Path, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home, self.secrets_dir = home, home.parent / f"{home.name}-secrets"
        defaults = {
            "MLFLOW_HOME": str(home),
            "SECRETS_DIR": str(self.secrets_dir),
            "MLFLOW_HOST": "127.0.0.1",
            "MLFLOW_PORT": str(self.port),
        }
        super().__init__(
            [sys.executable, "-m", "tracking.server"],
            child_environment(**{**defaults, **env}),
            log_path,
        )

    @property
    def password(self) -> str:
        """The admin password the server generated at its first start."""
        return (self.secrets_dir / "mlflow_tracking_password").read_text().strip()


@contextlib.contextmanager
def postgres_database(log_path: Path, durable: bool = False) -> Iterator[str]:
    """A PostgreSQL server from Debian's packages, in a temporary folder on a free loopback port,
    with a database `mlflow` owned by the user `mlflow` (password authentication); yields its
    SQLAlchemy URL (psycopg 3). FileNotFoundError when PostgreSQL is not installed. Without
    `durable` it does not fsync (tests: a killed client never needs it); benchmarks of durable
    writes ask for it."""
    import psycopg

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise FileNotFoundError("no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)")
    programs = found[-1].parent
    folder = Path(tempfile.mkdtemp(prefix="ctloop-postgres-"))
    password = secrets.token_urlsafe(16)
    (folder / "password").write_text(password)
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: the server runs as Debian's postgres user
        owner = pwd.getpwnam("postgres")
        for path in (folder, folder / "password"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    initdb = [str(programs / "initdb"), "-D", str(data), "-U", "mlflow", "-A", "scram-sha-256"]
    subprocess.run(
        [*as_user, *initdb, "--pwfile", str(folder / "password"), "--no-sync"],
        check=True,
        capture_output=True,
    )
    server = spawn(
        [*as_user, str(programs / "postgres"), "-D", str(data), "-p", str(port),
         "-k", str(folder), "-c", "listen_addresses=127.0.0.1",
         "-c", f"fsync={'on' if durable else 'off'}"],
        child_environment(),
        log_path,
    )  # fmt: skip
    address = f"mlflow:{password}@127.0.0.1:{port}"

    def connect() -> psycopg.Connection | None:
        try:
            return psycopg.connect(f"postgresql://{address}/postgres", autocommit=True)
        except psycopg.OperationalError:  # still starting
            return None

    try:
        connection = wait_for(connect, timeout=30, what="PostgreSQL to accept connections")
        with connection:
            connection.execute("CREATE DATABASE mlflow")
        yield f"postgresql+psycopg://{address}/mlflow"
    finally:
        stop_group(server, sig=signal.SIGINT)  # PostgreSQL's fast shutdown
        shutil.rmtree(folder, ignore_errors=True)


class StreamlitServer(ServerProcess):
    """The page (`python -m webapp`, which runs `streamlit run`) on a free loopback port."""

    name = "streamlit"
    health = "/_stcore/health"

    def __init__(self, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "webapp",
            "--server.port", str(self.port), "--server.address", "127.0.0.1",
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
        super().__init__(
            command, child_environment(STREAMLIT_SERVER_FILE_WATCHER_TYPE="none", **env), log_path
        )


@contextlib.contextmanager
def api_and_page(
    settings: CoreSettings, root: Path, **env: str
) -> Iterator[tuple[LiveServer, StreamlitServer]]:
    """A real API on `settings` (with `env`) and the page served by `streamlit run` against it,
    logs under `root`; the page must log no traceback."""
    with (
        LiveServer(settings, root / "api.log", **env) as api,
        StreamlitServer(root / "streamlit.log", WEBAPP_API_URL=api.url, API_TOKEN=api.token) as web,
    ):
        yield api, web
        assert "Traceback" not in web.logs(), web.logs()


def spawn(command: list[str], env: dict, log_path: Path, cwd: Path = REPO) -> subprocess.Popen:
    """A child in its own session (so its whole group can be stopped), output to `log_path`."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextlib.contextmanager
def running(command: list[str], log_path: Path, **environment: str) -> Iterator[subprocess.Popen]:
    """A child process group for the duration of a block; the `evidently ui` children it
    reports starting in their own session are killed too."""
    process = spawn(command, child_environment(**environment), log_path)
    try:
        yield process
    finally:
        stop_group(process)
        for pid in ui_pids(log_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def stop_group(process: subprocess.Popen, timeout: float = 15, sig: int = signal.SIGTERM) -> None:
    """Signal the process group, then SIGKILL it if it is still there after `timeout`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def json_logs(log_path: Path) -> list[dict]:
    """A process's JSON log lines (other lines are skipped)."""
    records = []
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
    return records


def ui_pids(log_path: Path) -> list[int]:
    """Pids of the `evidently ui` children the reporting service reported starting."""
    if not log_path.exists():
        return []
    return [
        int(record["ui_pid"])
        for record in json_logs(log_path)
        if record.get("message") == "evidently ui started"
    ]


def is_alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


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
