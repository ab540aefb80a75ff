"""Building blocks of the reporting tests: real CSVs, settings, real processes on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

from ctloop.config import CoreSettings
from ctloop.dataset import load_samples
from ctloop.predict import load_model
from ctloop.preprocess import preprocess
from ctloop.registry import ModelRegistry
from ctloop.tables import format_row, prod_header, prod_row_bytes, read_table

REPO = Path(__file__).resolve().parents[2]

from reporting.settings import ReportingSettings  # noqa: E402


def reporting_settings(data_dir: Path, **overrides) -> ReportingSettings:
    """Settings whose CSVs, workspace and HTML reports all live in `data_dir`."""
    values = {
        "data_dir": data_dir,
        "workspace": data_dir / "evidently",
        "reports_dir": data_dir / "reports",
        **overrides,
    }
    return ReportingSettings(**values)


def copy_reference(built: CoreSettings, data_dir: Path) -> Path:
    """A private copy of the built ref_data.csv (the `built` fixture is read-only)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(built.ref_data_path, data_dir / "ref_data.csv"))


def served_feedback(built: CoreSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, true labels, served labels) of the unseen images, through the served model."""
    samples = load_samples(built.samples_dir)
    model = load_model(ModelRegistry(built.artifacts_dir).load())
    pixels = np.stack([preprocess(image, model.spec) for image in samples.images])
    embeddings, labels, _ = model.predict_pixels(pixels)
    return embeddings, np.array(samples.labels), np.asarray(labels).astype(str)


def write_prod(
    path: Path,
    embeddings: np.ndarray,
    targets: np.ndarray,
    predictions: np.ndarray,
    header: bool = True,
    version: str = "v0001",
) -> None:
    """Write (or append, without header) feedback rows exactly as the serving API does."""
    with path.open("wb" if header else "ab") as handle:
        if header:
            handle.write(format_row(prod_header(embeddings.shape[1])))
        for number, (row, target, prediction) in enumerate(
            zip(embeddings, targets, predictions, strict=True)
        ):
            handle.write(
                prod_row_bytes(
                    row, str(target), str(prediction), version, "2026-01-01T00:00:00Z", f"r{number}"
                )
            )


def prod_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Target and prediction of prod_data.csv, read back as strings."""
    table = read_table(path)
    return table.columns["target"], table.columns["prediction"]


def free_port() -> int:
    """A port nothing listens on right now (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_environment(**extra: str) -> dict[str, str]:
    """This environment, with `reporting` and `ctloop` importable and telemetry off."""
    paths = [str(REPO), str(REPO / "scripts"), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path for path in paths if path),
        "DO_NOT_TRACK": "1",
        **extra,
    }


def wait_for(condition, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll `condition` until it returns a truthy value; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, OSError, ValueError):
            value = condition()
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def api(port: int, path: str) -> object:
    """GET a JSON document from the UI on loopback."""
    response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    response.raise_for_status()
    return response.json()


@contextlib.contextmanager
def running(command: list[str], log_path: Path, **environment: str) -> Iterator[subprocess.Popen]:
    """A child process in its own session, output to `log_path`; killed with its group on exit."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=child_environment(**environment),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop_group(process)
            for pid in ui_pids(log_path):  # a UI started by the service has its own session
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def stop_group(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def json_logs(log_path: Path) -> list[dict]:
    """The service's own log lines (one JSON object each); the UI's lines are plain text."""
    records = []
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
    return records


def ui_pids(log_path: Path) -> list[int]:
    """Pids of the `evidently ui` children the service reported starting."""
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
