"""What weeks of dashboard history cost the reporting container (issue 27).

    .venv/bin/python -m bench.dashboard_history [--days 1 35] [--json FILE]

One digits workspace (`ctloop init`) and 1,000 feedback rows; two real snapshots
(`reporting.project.update`): one whole, one thinned by the retention. Then, for each number of
days, an Evidently workspace as the retention leaves it after that many days of steady traffic at
the defaults: the newest REPORTING_KEEP_SNAPSHOTS whole, then one snapshot per
REPORTING_HISTORY_STEP_SECONDS with figures only (copies of the two real ones, their ids and time
stamps moved back in time, each with its own figures' values). On each, in one run:

- a real `evidently ui`: start to ready, then every series of every panel of the dashboard as
  the page asks for them (`data_series_batch`, all at once and timed), and the UI's peak RSS;
- one more snapshot on that workspace (`python -m reporting.project`, what the refresher runs
  after every change): wall seconds and peak RSS of its process;
- the workspace's size on disk.

Both processes live in the reporting container, limited to 1,536 MB (docker-compose.yml).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from bench.history import timed
from bench.retraining import FeedbackRows
from ctloop.prod_data import ProductionData, ProductionRow
from harness import loopback
from harness.data import make_settings
from harness.processes import child_environment, free_port, spawn, stop_group, wait_for
from reporting.project import update
from reporting.retention import thin_snapshot
from reporting.settings import ReportingSettings
from reporting.workspace import SNAPSHOTS

ROWS = 1_000
PREFIX = "evidently:metric_v2:"


def uuid7_at(seconds: float, rng: random.Random) -> uuid.UUID:
    """A UUIDv7 of that time, as Evidently makes its snapshot ids."""
    value = (int(seconds * 1000) << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
    return uuid.UUID(int=value | (0b10 << 62) | rng.getrandbits(62))


def real_snapshots(root: Path) -> tuple[ReportingSettings, dict, dict]:
    """Settings of a workspace with feedback, and one whole and one thin snapshot (JSON)."""
    settings = make_settings(root)
    environment = child_environment(
        DATA_DIR=str(settings.data_dir), ARTIFACTS_DIR=str(settings.artifacts_dir)
    )
    subprocess.run([sys.executable, "-m", "ctloop", "init"], env=environment, check=True)
    feedback = FeedbackRows(settings.data_dir, settings.artifacts_dir)
    prod = ProductionData(settings.prod_data_path, feedback.embeddings.shape[1])
    for number in range(ROWS):
        i = number % len(feedback.labels)
        prod.append(
            ProductionRow(
                feedback.embeddings[i],
                feedback.labels[i],
                str(feedback.served[i]),
                feedback.version,
                f"bench-{number}",
            )
        )
    reporting = ReportingSettings(data_dir=settings.data_dir, workspace=root / "real")
    result = update(reporting)
    folder = reporting.workspace_dir / str(result.project_id) / SNAPSHOTS
    whole_path = folder / f"{result.snapshot_id}.json"
    thin_path = root / "thin.json"
    shutil.copyfile(whole_path, thin_path)
    thin_snapshot(thin_path, root)
    return reporting, json.loads(whole_path.read_bytes()), json.loads(thin_path.read_bytes())


def fill(
    workspace: Path, source: Path, whole: dict, thin: dict, days: float, settings: ReportingSettings
) -> int:
    """The workspace as the retention leaves it after `days`; how many snapshots it holds."""
    shutil.copytree(source, workspace)
    (project,) = [p for p in workspace.iterdir() if p.is_dir()]
    folder = project / SNAPSHOTS
    for old in folder.glob("*.json"):
        old.unlink()
    rng = random.Random(0)
    now = time.time()
    # At the defaults the refresher adds one every 30 s under steady traffic.
    times = [now - 30 * n for n in range(settings.keep_snapshots)]
    step = settings.history_step_seconds
    oldest = now - days * 86400
    start = (times[-1] // step) * step - 1
    times += [t for t in _steps(start, oldest, step)]
    for n, seconds in enumerate(times):
        snapshot = json.loads(json.dumps(whole if n < settings.keep_snapshots else thin))
        stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).replace(tzinfo=None)
        snapshot["timestamp"] = stamp.isoformat()
        _vary(snapshot, rng)
        path = folder / f"{uuid7_at(seconds, rng)}.json"
        path.write_text(json.dumps(snapshot))
    return len(times)


def _steps(start: float, oldest: float, step: float):
    seconds = start
    while seconds >= oldest:
        yield seconds
        seconds -= step


def _vary(snapshot: dict, rng: random.Random) -> None:
    """Each copy's own figures (plots of identical values would compress nothing but look odd)."""
    for result in snapshot["metric_results"].values():
        value = result.get("value")
        if isinstance(value, float) and 0 < value < 1:
            result["value"] = min(max(value + rng.uniform(-0.01, 0.01), 0.0), 1.0)


def series_filters(port: int, project_id: str) -> list[dict]:
    """Every series of every panel of the dashboard, as the page asks for them."""
    dashboard = loopback.get(f"http://127.0.0.1:{port}/api/v2/dashboards/{project_id}", timeout=30)
    dashboard.raise_for_status()
    filters = []
    for panel in dashboard.json()["panels"]:
        for value in panel.get("values") or []:
            metric = value["metric"]
            filters.append(
                {
                    "metric": metric if ":" in metric else PREFIX + metric,
                    "metric_labels": value.get("metric_labels") or {},
                    "tags": [],
                    "metadata": {},
                }
            )
    return filters


def peak_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_ui(workspace: Path, log: Path) -> dict:
    port = free_port()
    command = [sys.executable, "-m", "evidently.cli", "ui", "--workspace", str(workspace)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    environment = child_environment(DO_NOT_TRACK="1")
    started = time.perf_counter()
    process = spawn(command, environment, log)
    try:
        url = f"http://127.0.0.1:{port}/api/version"
        wait_for(lambda: _answers(url), 600, interval=0.2, what="evidently ui")
        ready = time.perf_counter() - started
        (project,) = loopback.get(f"http://127.0.0.1:{port}/api/projects", timeout=60).json()
        filters = series_filters(port, project["id"])
        times = []
        for _ in range(3):
            asked = time.perf_counter()
            response = loopback.post(
                f"http://127.0.0.1:{port}/api/v2/snapshots/{project['id']}/data_series_batch",
                json={"series_filter": filters},
                timeout=600,
            )
            response.raise_for_status()
            times.append(time.perf_counter() - asked)
        points = sum(len(found["values"]) for found in response.json()["series"])
        return {
            "ui_ready_seconds": round(ready, 1),
            "dashboard_series": len(filters),
            "dashboard_points": points,
            "dashboard_seconds_median": round(sorted(times)[1], 2),
            "ui_peak_mb": round(peak_mb(process.pid)),
        }
    finally:
        stop_group(process)


def _answers(url: str) -> bool:
    try:
        return loopback.get(url, timeout=2).status_code == 200
    except OSError:
        return False


def disk_mb(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, nargs="+", default=[1.0, 35.0])
    parser.add_argument("--json", type=Path, help="also write the figures there")
    args = parser.parse_args(argv)
    figures = []
    with tempfile.TemporaryDirectory(prefix="ctloop-dashboard-history-") as folder:
        root = Path(folder)
        reporting, whole, thin = real_snapshots(root)
        print(
            f"one snapshot: whole {len(json.dumps(whole)) / 1e6:.2f} MB, "
            f"figures only {len(json.dumps(thin)) / 1e6:.3f} MB"
        )
        print(
            f"{'days':>5} {'snapshots':>9} {'disk MB':>8} {'UI ready s':>10} {'series':>6} "
            f"{'points':>7} {'panels s':>8} {'UI peak MB':>10} {'snapshot s':>10} {'peak MB':>8}"
        )
        for days in args.days:
            workspace = root / f"workspace-{days:g}"
            count = fill(workspace, reporting.workspace_dir, whole, thin, days, reporting)
            figure = {"days": days, "snapshots": count, "disk_mb": round(disk_mb(workspace), 1)}
            figure |= measure_ui(workspace, root / f"ui-{days:g}.log")
            env = child_environment(
                DATA_DIR=str(reporting.data_dir),
                REPORTING_WORKSPACE=str(workspace),
                REPORTING_REPORTS_DIR=str(root / f"reports-{days:g}"),
            )
            seconds, peak = timed(
                [sys.executable, "-m", "reporting.project"], env, root / f"snap-{days:g}.log"
            )
            figure |= {"snapshot_seconds": round(seconds, 1), "snapshot_peak_mb": round(peak)}
            figures.append(figure)
            print(
                f"{days:5g} {count:9} {figure['disk_mb']:8.1f} {figure['ui_ready_seconds']:10.1f} "
                f"{figure['dashboard_series']:6} {figure['dashboard_points']:7} "
                f"{figure['dashboard_seconds_median']:8.2f} {figure['ui_peak_mb']:10} "
                f"{seconds:10.1f} {round(peak):8}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps({"cpus": os.cpu_count(), "runs": figures}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
