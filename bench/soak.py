"""A soak of the Compose stack on a year of feedback (issue 27).

    .venv/bin/python -m bench.soak [--rows 1000000] [--feedbacks 10000] [--json FILE]

Needs a Docker engine with Compose v2, and the images `make e2e` uses. In one run:

1. `docker compose up --build` of a fresh copy of the repository on free ports
   (harness.compose.Stack, as the end-to-end tests do);
2. the API and the dashboard stopped, `--rows` feedback rows written to its data/prod_data.csv
   (the served model's embeddings of the unseen images, cycled, in the file's own format) with a
   ledger line saying every trigger so far was decided, then both started again: seconds until
   they answer;
3. `--feedbacks` feedbacks through POST /feedback (16 at a time, each followed by a /predict),
   while `docker stats` is sampled every second: each container's peak memory against its limit;
4. then, until the loop has caught up: the retrain decisions since step 2, the dashboard's newest
   snapshot (its name says the rows it covers), the exporter's figures, Prometheus's targets,
   and whether a container was killed for memory or restarted.

The rate limit of /feedback is lifted for the run (SERVING_FEEDBACK_RATE_LIMIT): the soak is
about history and load, not about one client's quota.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.history import nothing_due, write_history
from ctloop.retrain_log import RetrainLog
from harness import loopback
from harness.compose import Stack, compose_command, copy_repository
from harness.data import make_settings
from harness.images import b64
from harness.processes import free_port

UNITS = {"B": 1 / 1048576, "KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}


def mib(text: str) -> float:
    for unit in ("KiB", "MiB", "GiB", "B"):
        if text.strip().endswith(unit):
            return float(text.strip()[: -len(unit)]) * UNITS[unit]
    raise ValueError(text)


class MemorySampler(threading.Thread):
    """Every container of the project: the largest memory use `docker stats` reported, and its
    limit."""

    def __init__(self, project: str) -> None:
        super().__init__(daemon=True)
        self.project = project
        self.peaks: dict[str, float] = {}
        self.limits: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            listed = subprocess.run(
                ["docker", "stats", "--no-stream", "--format", "{{json .}}"],
                capture_output=True,
                text=True,
                check=False,
            )
            for line in listed.stdout.splitlines():
                stats = json.loads(line)
                name = stats["Name"]
                if not name.startswith(self.project):
                    continue
                service = re.sub(rf"^{re.escape(self.project)}[-_]|[-_]\d+$", "", name)
                used, limit = (mib(part) for part in stats["MemUsage"].split("/"))
                self.peaks[service] = max(self.peaks.get(service, 0.0), used)
                self.limits[service] = limit
            self.stop.wait(1.0)


def give_to(folder: Path, owner: Path) -> None:
    """Files written here as root belong to the user the containers run as (the folder's)."""
    status = owner.stat()
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, status.st_uid, status.st_gid)


async def send(stack: Stack, items: list[tuple[bytes, str]], concurrency: int) -> dict:
    """Each feedback then a prediction of the same image; status counts and timings."""
    statuses: dict[str, int] = {}
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=stack.url("serving"), timeout=120) as http:

        async def one(image: bytes, label: str) -> None:
            async with limit:
                body = {"image": b64(image), "target": label}
                reply = await http.post("/feedback", json=body, headers=stack.auth)
                key = f"feedback {reply.status_code}"
                statuses[key] = statuses.get(key, 0) + 1
                reply = await http.post("/predict", json={"image": b64(image)})
                key = f"predict {reply.status_code}"
                statuses[key] = statuses.get(key, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one(image, label) for image, label in items))
        statuses["seconds"] = round(time.perf_counter() - started, 1)
    return statuses


def feedback_items(root: Path, count: int) -> list[tuple[bytes, str]]:
    from ctloop.dataset import load_samples

    samples = load_samples(root / "data" / "samples")
    pairs = list(zip(samples.inputs, samples.labels, strict=True))
    return [pairs[n % len(pairs)] for n in range(count)]


def snapshot_names(stack: Stack) -> list[str]:
    api = stack.url("reporting") + "/api/projects"
    names = []
    for project in loopback.get(api, timeout=30).json():
        snapshots = loopback.get(f"{api}/{project['id']}/snapshots", timeout=60).json()
        names += [snapshot["name"] for snapshot in snapshots]
    return names


def prometheus_targets(stack: Stack) -> dict[str, str]:
    found = loopback.get(stack.url("prometheus") + "/api/v1/targets", timeout=30).json()
    return {target["labels"]["job"]: target["health"] for target in found["data"]["activeTargets"]}


def container_states(stack: Stack) -> dict[str, dict]:
    states = {}
    for line in stack.run("ps", "-a", "--format", "json", timeout=60).stdout.splitlines():
        entry = json.loads(line)
        inspected = json.loads(
            subprocess.run(
                ["docker", "inspect", entry["ID"]], capture_output=True, text=True, check=True
            ).stdout
        )[0]
        states[entry["Service"]] = {
            "status": inspected["State"]["Status"],
            "oom_killed": inspected["State"]["OOMKilled"],
            "restarts": inspected["RestartCount"],
        }
    return states


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--feedbacks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path, help="also write the figures there")
    args = parser.parse_args(argv)
    compose = compose_command()
    if compose is None:
        raise SystemExit("no Docker engine with Compose v2 answers here")
    figures: dict = {"rows": args.rows, "feedbacks": args.feedbacks}
    with tempfile.TemporaryDirectory(prefix="ctloop-soak-") as folder:
        root = copy_repository(Path(folder))
        if os.geteuid() == 0:  # the containers' user, as on a laptop
            for name in ("data", "artifacts", "secrets"):
                os.chown(root / name, 1000, 1000)
        stack = Stack(root, compose, free_port, SERVING_FEEDBACK_RATE_LIMIT="100000/second")
        sampler = MemorySampler(stack.project)
        try:
            figures["cold_start_seconds"] = round(stack.up(build=True), 1)
            sampler.start()
            stack.run("stop", "serving-api", "reporting", timeout=300)
            started = time.perf_counter()
            per_row = write_history(root / "data", root / "artifacts", args.rows)
            decided_before = len(RetrainLog(root / "artifacts" / "retrains.jsonl").decisions())
            nothing_due(make_settings(root), args.rows)  # one decision line, one check line
            give_to(root / "data", root / "data")
            give_to(root / "artifacts", root / "artifacts")
            figures["history_written_seconds"] = round(time.perf_counter() - started, 1)
            figures["bytes_per_row"] = round(per_row, 1)
            started = time.perf_counter()
            stack.run("start", "serving-api", "reporting", timeout=300)
            stack.wait_ready(timeout=900)
            figures["restart_on_history_seconds"] = round(time.perf_counter() - started, 1)

            items = feedback_items(root, args.feedbacks)
            figures["traffic"] = asyncio.run(send(stack, items, args.concurrency))
            total = args.rows + args.feedbacks

            def caught_up() -> bool:
                names = snapshot_names(stack)
                return any(name.endswith(f"of {total} feedback rows") for name in names)

            deadline = time.monotonic() + 900
            while not caught_up() and time.monotonic() < deadline:
                time.sleep(5)
            figures["dashboard_caught_up"] = caught_up()
            decisions = RetrainLog(root / "artifacts" / "retrains.jsonl").decisions()
            figures["retrain_decisions"] = len(decisions) - decided_before - 1
            figures["decisions"] = {
                kind: sum(
                    1 for entry in decisions[decided_before + 1 :] if entry["decision"] == kind
                )
                for kind in ("promoted", "rejected", "superseded", "failed")
            }
            metrics = loopback.get(stack.url("reporting-metrics") + "/metrics", timeout=30).text
            figures["exporter_snapshot_rows"] = re.findall(
                r"^ctloop_reporting_snapshot_rows (\S+)$", metrics, re.MULTILINE
            )
            figures["prometheus_targets"] = prometheus_targets(stack)
            figures["containers"] = container_states(stack)
        finally:
            sampler.stop.set()
            sampler.join(timeout=30)
            figures["peak_memory_mib"] = {
                service: {"peak": round(peak), "limit": round(sampler.limits[service])}
                for service, peak in sorted(sampler.peaks.items())
            }
            stack.down(volumes=True)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
