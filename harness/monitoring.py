"""The monitoring tests' building blocks: the repository's files, Prometheus' own tools."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from harness import loopback
from harness.processes import REPO, free_port

MONITORING = REPO / "monitoring"
RULES = MONITORING / "prometheus" / "rules" / "ctloop.rules.yml"
RULE_TESTS = MONITORING / "prometheus" / "tests" / "ctloop.test.yml"
DASHBOARDS = MONITORING / "grafana" / "dashboards"
INSTALL = "apt-get install prometheus prometheus-alertmanager (.ci/run does it)"


def tool(name: str) -> str:
    """The path of a Prometheus tool, or skip the test saying how to install it."""
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: {INSTALL}")
    return found


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@contextlib.contextmanager
def local_prometheus(folder: Path, rules: Path | None = None) -> Iterator[str]:
    """A real Prometheus (Debian's binary) on loopback with an empty database; its base URL."""
    binary = tool("prometheus")
    config = {"global": {"evaluation_interval": "1s"}, "rule_files": [str(rules)] if rules else []}
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if loopback.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((folder / "prometheus.log").read_text()[-3000:])
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
