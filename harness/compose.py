"""A copy of the repository brought up with Docker Compose on free ports: the end-to-end tests
and the soak benchmark (bench/soak.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx

from harness import loopback

REPO = Path(__file__).resolve().parents[1]
GRAFANA = "grafana"


def compose_image(service: str) -> str:
    """The image a service of docker-compose.yml pins."""
    import yaml

    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"][service]["image"]


def image_available(image: str) -> bool:
    """The image is here, or can be pulled (never true for Grafana on the CI machines)."""
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
        return True
    pulled = subprocess.run(["docker", "pull", "-q", image], capture_output=True, timeout=600)
    return pulled.returncode == 0


def compose_command() -> list[str] | None:
    """`docker compose` (v2) if present, else `docker-compose` (v1.29), None without an engine.

    CI (CTLOOP_FAIL_ON_SKIP=1) accepts only v2, the command the README tells users to run.
    """
    if shutil.which("docker") is None:
        return None
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return None
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if os.environ.get("CTLOOP_FAIL_ON_SKIP") == "1":
        return None
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def copy_repository(target: Path) -> Path:
    """The checkout's tracked files (what a fresh clone has), with empty data/ and artifacts/."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = REPO / name.decode()
        if source.is_file():
            destination = target / name.decode()
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    for folder in ("data", "artifacts", "secrets"):
        (target / folder).mkdir(exist_ok=True)
    return target


class Stack:
    """`compose up --build` in a copy of the repository, on its own ports and network."""

    def __init__(self, root: Path, compose: list[str], free_port, **settings: str) -> None:
        self.root, self.compose = root, compose
        self.project = f"ctloop-e2e-{uuid.uuid4().hex[:8]}"
        self.ports = {
            name: free_port()
            for name in (
                "serving",
                "webapp",
                "reporting",
                "reporting-metrics",
                "prometheus",
                "alertmanager",
                "grafana",
                "mlflow",
            )
        }
        # Grafana is started wherever its image can be pulled; elsewhere every other service is
        # named, so that compose does not try to pull it.
        self.with_grafana = image_available(compose_image(GRAFANA))
        self.env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": self.project,
            "NETWORK_NAME": f"{self.project}-net",
            "SERVING_PORT": str(self.ports["serving"]),
            "WEBAPP_PORT": str(self.ports["webapp"]),
            "REPORTING_PORT": str(self.ports["reporting"]),
            "REPORTING_METRICS_PORT": str(self.ports["reporting-metrics"]),
            "PROMETHEUS_PORT": str(self.ports["prometheus"]),
            "ALERTMANAGER_PORT": str(self.ports["alertmanager"]),
            "GRAFANA_PORT": str(self.ports["grafana"]),
            "MLFLOW_PORT": str(self.ports["mlflow"]),
            "WEBAPP_PUBLIC_API_URL": f"http://localhost:{self.ports['serving']}",
            "WEBAPP_DASHBOARD_URL": f"http://localhost:{self.ports['reporting']}",
            **settings,
        }

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def auth(self) -> dict[str, str]:
        """The API token the first start generated in secrets/api_token."""
        token = (self.root / "secrets" / "api_token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def container(self, service: str) -> dict:
        """`docker inspect` of the service's running container."""
        found = self.run("ps", "-q", service, timeout=60).stdout.split()
        if not found:
            raise RuntimeError(f"{service} has no running container")
        inspected = subprocess.run(
            ["docker", "inspect", found[0]], capture_output=True, text=True, check=True
        )
        return json.loads(inspected.stdout)[0]

    def memory_mib(self, service: str) -> float:
        """The container's memory use now (its cgroup's, as `docker stats` reports it)."""
        name = self.container(service)["Name"].lstrip("/")
        stats = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{json .}}", name],
            capture_output=True,
            text=True,
            check=True,
        )
        used = json.loads(stats.stdout)["MemUsage"].split("/")[0].strip()
        units = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "B": 1 / 1048576}
        for unit, factor in units.items():
            if used.endswith(unit):
                return float(used[: -len(unit)]) * factor
        raise ValueError(used)

    def run(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.compose, *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def up(self, build: bool) -> float:
        """Start the stack and wait until every service answers; return the seconds it took."""
        started = time.perf_counter()
        result = self.run("up", "-d", *(["--build"] if build else []), *self.services())
        if result.returncode != 0:
            raise RuntimeError(
                f"compose up failed:\n{result.stdout}\n{result.stderr}\n{self.logs()}"
            )
        self.wait_ready()
        return time.perf_counter() - started

    def wait_ready(self, timeout: float = 300) -> None:
        checks = {
            "serving": "/ready",
            "webapp": "/_stcore/health",
            "reporting": "/api/version",
            "reporting-metrics": "/metrics",
            "prometheus": "/-/ready",
            "alertmanager": "/-/ready",
            "mlflow": "/health",
        }
        if self.with_grafana:
            checks["grafana"] = "/api/health"
        deadline = time.monotonic() + timeout
        pending = dict(checks)
        while pending and time.monotonic() < deadline:
            for service, path in list(pending.items()):
                try:
                    if loopback.get(self.url(service) + path, timeout=2).status_code == 200:
                        del pending[service]
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        if pending:
            raise RuntimeError(f"not ready after {timeout} s: {sorted(pending)}\n{self.logs()}")

    def services(self) -> list[str]:
        """The services to start: all of them (compose's default), or all but Grafana."""
        if self.with_grafana:
            return []
        import yaml

        listed = yaml.safe_load((self.root / "docker-compose.yml").read_text())["services"]
        return [name for name in listed if name != GRAFANA]

    def down(self, volumes: bool = False) -> None:
        self.run("down", "--remove-orphans", *(["--volumes"] if volumes else []), timeout=300)

    def logs(self) -> str:
        result = self.run("logs", "--no-color", "--tail", "80", timeout=120)
        return result.stdout[-20000:]

    def container_user(self, service: str) -> str:
        """The uid the service's main process runs as (from the running container)."""
        result = self.run("exec", "-T", service, "id", "-u", timeout=60)
        return result.stdout.strip()

    def image_sizes(self) -> dict[str, str]:
        sizes = {}
        for image in ("ctloop-serving", "ctloop-webapp", "ctloop-reporting", "ctloop-tracking"):
            found = subprocess.run(
                ["docker", "image", "inspect", "-f", "{{.Size}}", image],
                capture_output=True,
                text=True,
            )
            if found.returncode == 0:
                sizes[image] = f"{int(found.stdout.strip()) / 1e6:.0f} MB"
        return sizes


def write_figures(figures: dict, name: str = "e2e-figures.json") -> Path:
    folder = REPO / "tests" / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(figures, indent=2) + "\n")
    return path
