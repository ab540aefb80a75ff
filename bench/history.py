"""What a long production history costs the loop's recurring work (issue 27).

    .venv/bin/python -m bench.history [--rows 1000 100000 1000000] [--json FILE]

One digits workspace (`ctloop init`), then for each size a `prod_data.csv` of that many feedback
rows (the unseen images embedded by the served model, cycled, their true classes; written in the
file's own row format, as fast as a buffered file takes them), and in one run:

- a dashboard snapshot (`python -m reporting.project`: one `reporting.project.update`, which the
  refresher runs after every change): wall seconds and peak RSS of its process, for the first
  snapshot (it creates the project) and the next one (what the refresher repeats);
- the serving API's start to ready (`python -m serving`, one worker, until /ready answers 200):
  the first start on the file (as after an upgrade: nothing says how far it was checked) and a
  restart;
- the trainer's start, after the API's (which launches it): `python -m ctloop retrain` with no
  retrain due (ledger lines say every trigger so far was decided; it reads its state, then has
  nothing to do): wall seconds and peak RSS;
- disk per row.

The figures say where time and memory grow with history; the issue asks for flat ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.retraining import FeedbackRows
from ctloop.config import CoreSettings
from ctloop.prod_data import ProductionRow
from ctloop.retrain_log import RetrainLog
from ctloop.tables import format_row, prod_header
from harness.data import make_settings
from harness.processes import LiveServer, child_environment

CHUNK = 10_000  # rows formatted and written at once


def write_history(data: Path, artifacts: Path, rows: int) -> float:
    """prod_data.csv with `rows` feedback rows; its size in bytes per row."""
    feedback = FeedbackRows(data, artifacts)  # the served model's embeddings of the samples
    embeddings, served, labels = feedback.embeddings, feedback.served, feedback.labels
    path = data / "prod_data.csv"
    with path.open("wb") as handle:
        handle.write(format_row(prod_header(embeddings.shape[1])))
        for start in range(0, rows, CHUNK):
            lines = []
            for number in range(start, min(start + CHUNK, rows)):
                i = number % len(labels)
                row = ProductionRow(
                    embeddings[i], labels[i], str(served[i]), feedback.version,
                    f"history-{number}", timestamp="2026-01-01T00:00:00.000Z",
                )  # fmt: skip
                lines.append(row.to_line())
            handle.write(b"".join(lines))
    return path.stat().st_size / rows


def nothing_due(settings: CoreSettings, rows: int) -> None:
    """Ledger lines saying every retrain and trigger check up to `rows` was decided: the trainer
    then only reads its state and exits, which is its start cost."""
    ledger = RetrainLog(settings.retrain_log_path)
    last = rows - rows % settings.retrain_every
    ledger.append(
        {"trigger_rows": last, "decision": "rejected", "version": None, "reasons": [],
         "reason": "bench.history: rows written without retraining"}
    )  # fmt: skip
    ledger.append({"event": "check", "rows": rows})


def timed(command: list[str], env: dict, log: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process run to its end (os.wait4: that
    child's own figures, not the largest of every child so far)."""
    started = time.perf_counter()
    with log.open("wb") as output:
        child = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{log.read_text(errors='replace')}")
    return seconds, usage.ru_maxrss / 1024


def measure(root: Path, rows: int) -> dict:
    settings = make_settings(root)
    per_row = write_history(settings.data_dir, settings.artifacts_dir, rows)
    nothing_due(settings, rows)
    env = child_environment(
        DATA_DIR=str(settings.data_dir),
        ARTIFACTS_DIR=str(settings.artifacts_dir),
        REPORTING_WORKSPACE=str(root / f"workspace-{rows}"),
        REPORTING_REPORTS_DIR=str(root / f"reports-{rows}"),
    )
    snapshots = [
        timed([sys.executable, "-m", "reporting.project"], env, root / f"report-{rows}-{n}.log")
        for n in (1, 2)
    ]
    starts = []
    for attempt in ("first", "restart"):  # first: the file was written outside the stack
        with LiveServer(settings, root / f"serving-{rows}-{attempt}.log") as server:
            starts.append(server.ready_seconds or 0.0)
    # After the API, as the API launches it: the workers' check left a checkpoint of the file.
    trainer = timed([sys.executable, "-m", "ctloop", "retrain"], env, root / f"train-{rows}.log")
    return {
        "rows": rows,
        "bytes_per_row": round(per_row, 1),
        "file_mb": round(per_row * rows / 1e6, 1),
        "first_snapshot_seconds": round(snapshots[0][0], 1),
        "snapshot_seconds": round(snapshots[1][0], 1),
        "snapshot_peak_mb": round(max(peak for _, peak in snapshots)),
        "trainer_start_seconds": round(trainer[0], 2),
        "trainer_peak_mb": round(trainer[1]),
        "api_first_start_to_ready_seconds": round(starts[0], 2),
        "api_restart_to_ready_seconds": round(starts[1], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    parser.add_argument("--json", type=Path, help="also write the figures there")
    args = parser.parse_args(argv)
    figures = []
    print(
        f"{'rows':>9} {'MB':>6} {'B/row':>6} {'1st snap s':>10} {'snapshot s':>10} {'peak MB':>8} "
        f"{'trainer s':>9} {'peak MB':>8} {'API first s':>11} {'restart s':>9}"
    )
    with tempfile.TemporaryDirectory(prefix="ctloop-history-") as folder:
        root = Path(folder)
        settings = make_settings(root)
        environment = child_environment(
            DATA_DIR=str(settings.data_dir), ARTIFACTS_DIR=str(settings.artifacts_dir)
        )
        subprocess.run([sys.executable, "-m", "ctloop", "init"], env=environment, check=True)
        for rows in sorted(args.rows):
            figure = measure(root, rows)
            figures.append(figure)
            print(
                f"{rows:9} {figure['file_mb']:6.1f} {figure['bytes_per_row']:6.1f} "
                f"{figure['first_snapshot_seconds']:10.1f} {figure['snapshot_seconds']:10.1f} "
                f"{figure['snapshot_peak_mb']:8} "
                f"{figure['trainer_start_seconds']:9.2f} {figure['trainer_peak_mb']:8} "
                f"{figure['api_first_start_to_ready_seconds']:11.2f} "
                f"{figure['api_restart_to_ready_seconds']:9.2f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps({"cpus": os.cpu_count(), "sizes": figures}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
