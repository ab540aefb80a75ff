"""Figures of the reporting service: snapshot build time, `evidently ui` start time and memory.

    .venv/bin/python bench/reporting.py [--runs 5] [--ui-starts 3]

Runs in a temporary folder on real data: the digits reference built by the ML core with 1% of the
images kept unseen (about 1,780 reference rows), and 1,000 production rows drawn from it with
noise and 10% wrong predictions. Prints medians (this machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from ctloop.config import CoreSettings
from ctloop.prod_data import ProductionData, ProductionRow
from ctloop.reference import build_reference, read_reference
from reporting.project import update
from reporting.serve import ui_command
from reporting.settings import ReportingSettings

REPO = Path(__file__).resolve().parents[1]


def make_data(data_dir: Path, production_rows: int = 1000) -> int:
    """Reference from the ML core, production rows written as the serving API writes them."""
    core = CoreSettings(
        data_dir=data_dir, artifacts_dir=data_dir.parent / "artifacts", unseen_fraction=0.01
    )
    build_reference(core)
    reference = read_reference(core.ref_data_path)
    rng = np.random.default_rng(0)
    classes = sorted(set(reference.targets.tolist()))
    width = reference.embeddings.shape[1]
    store = ProductionData(core.prod_data_path, width)
    for number, index in enumerate(rng.choice(len(reference), production_rows)):
        target = str(reference.targets[index])
        prediction = target if rng.random() < 0.9 else str(rng.choice(classes))
        embedding = reference.embeddings[index] + rng.normal(0, 0.05, width)
        store.append(ProductionRow(embedding, target, prediction, "v0001", str(number)))
    return len(reference)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback only)
        return response.read()


def start_ui(settings: ReportingSettings) -> tuple[float, float, float]:
    """(seconds until /api/version answers, resident MB once the project was served, CPU s)."""
    environment = {**os.environ, "DO_NOT_TRACK": "1"}
    children_cpu = children_cpu_seconds()
    started = time.perf_counter()
    process = subprocess.Popen(
        ui_command(settings), env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{settings.port}"
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError("evidently ui exited")
            try:
                get(f"{base}/api/version")
                break
            except OSError:
                time.sleep(0.05)
        seconds = time.perf_counter() - started
        project_id = json_id(get(f"{base}/api/projects"))
        get(f"{base}/api/projects/{project_id}/snapshots")
        get(f"{base}/api/v2/dashboards/{project_id}")
        memory = rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return seconds, memory, children_cpu_seconds() - children_cpu


def children_cpu_seconds() -> float:
    """User + system CPU time of the waited-for children of this process."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def json_id(body: bytes) -> str:
    return json.loads(body)[0]["id"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed snapshot builds")
    parser.add_argument("--ui-starts", type=int, default=3, help="timed starts of evidently ui")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        data_dir = Path(root) / "data"
        reference_rows = make_data(data_dir)
        settings = ReportingSettings(
            data_dir=data_dir, host="127.0.0.1", port=free_port(), keep_snapshots=0
        )
        update(settings)  # warm-up: lazy imports and caches inside Evidently
        one_snapshot = [start_ui(settings) for _ in range(args.ui_starts)]
        timings, cpu = [], []
        for _ in range(args.runs):
            cpu_before = time.process_time()
            result = update(settings)
            cpu.append(time.process_time() - cpu_before)
            timings.append(result.seconds)
        snapshots = args.runs + 1
        many_snapshots = [start_ui(settings) for _ in range(args.ui_starts)]

        stored = [p.stat().st_size for p in settings.workspace_dir.glob("*/snapshots/*.json")]
        html = result.html_report.stat().st_size
        print(f"data: {reference_rows} reference rows, {result.feedback_rows} production rows")
        print(
            f"one snapshot (load CSVs, report, HTML file, add run, dashboard): median "
            f"{statistics.median(timings):.2f} s over {args.runs} runs "
            f"(min {min(timings):.2f}, max {max(timings):.2f}), CPU "
            f"{statistics.median(cpu):.2f} s; in process, imports excluded"
        )
        print(
            f"  stored snapshot {statistics.median(stored) / 1e6:.2f} MB, HTML report "
            f"{html / 1e6:.2f} MB"
        )
        start_1 = statistics.median(s for s, _, _ in one_snapshot)
        start_n = statistics.median(s for s, _, _ in many_snapshots)
        rss_1 = statistics.median(m for _, m, _ in one_snapshot)
        rss_n = statistics.median(m for _, m, _ in many_snapshots)
        cpu_1 = statistics.median(c for _, _, c in one_snapshot)
        print(
            f"evidently ui start, until /api/version answers: median {start_1:.2f} s with 1 "
            f"snapshot, {start_n:.2f} s with {snapshots} ({args.ui_starts} starts each); "
            f"CPU {cpu_1:.2f} s a start"
        )
        print(
            f"evidently ui resident memory after serving the project: {rss_1:.0f} MB with 1 "
            f"snapshot, {rss_n:.0f} MB with {snapshots} "
            f"(about {(rss_n - rss_1) / (snapshots - 1):.1f} MB per snapshot)"
        )
        print(f"load average while measuring: {os.getloadavg()[0]:.2f} (2 cores)")


if __name__ == "__main__":
    main()
