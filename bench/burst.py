"""A burst of feedback and how long the loop takes to decide every retrain it triggered.

    .venv/bin/python -m bench.burst [--feedbacks 10000] [--clients 16] [--every 20] [--workers 2]
                                    [--seconds 0] [--scratch-every N] [--checkout DIR]
    .venv/bin/python -m bench.burst --smoke DIR     # 40 feedbacks, k = 20, one worker

One reference build and first model (`ctloop init`, the default five-network head) in a
temporary folder, served by `python -m serving` with WORKERS workers and k = EVERY; CLIENTS
concurrent clients send FEEDBACKS feedbacks (the unseen sample images, their true classes) as
fast as the server takes them. Prints the burst's duration and rate, then how long after its
last reply the last trigger was decided (/model's retrain_backlog back to 0 and the ledger's last
decision at the last multiple of k), and the trainer's decisions: how many retrains ran, how many
triggers were superseded, the median and longest retrain.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import smoke
from bench.procs import Server, free_port
from ctloop.retrain_log import RetrainLog
from harness import loopback
from harness.processes import REPO, child_environment

TOKEN = secrets.token_hex(16)


def build(root: Path, env: dict) -> None:
    subprocess.run([sys.executable, "-m", "ctloop", "init"], env=env, check=True,
                   capture_output=True)  # fmt: skip


def feedback_bodies(samples: Path) -> list[bytes]:
    bodies = []
    for folder in sorted(p for p in samples.iterdir() if p.is_dir()):
        for image in sorted(folder.iterdir()):
            body = {"image": base64.b64encode(image.read_bytes()).decode(), "target": folder.name}
            bodies.append(json.dumps(body).encode())
    return bodies


async def burst(
    url: str, bodies: list[bytes], total: int, clients: int, seconds: float = 0
) -> tuple[float, dict]:
    """Send `total` feedbacks from `clients` concurrent clients, spread over `seconds` at least
    (0: as fast as the server takes them); (seconds taken, status counts)."""
    statuses: dict[int, int] = {}
    counter = iter(range(total))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    started = time.perf_counter()

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120, headers=headers) as http:
            for index in counter:
                due = started + seconds * index / total  # the paced schedule, if any
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                reply = await http.post("/feedback", content=bodies[index % len(bodies)])
                statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feedbacks", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--seconds", type=float, default=0, help="spread the burst over this long (0: flat out)"
    )
    parser.add_argument("--wait", type=float, default=900, help="longest wait for the backlog")
    parser.add_argument(
        "--scratch-every",
        type=int,
        default=None,
        help="SCRATCH_EVERY for the server (a small value puts a full rebuild inside the burst)",
    )
    parser.add_argument(
        "--checkout", type=Path, default=None, help="serve another checkout's code (before/after)"
    )
    args = smoke.parse(parser, feedbacks=40, clients=4, every=20, workers=1, wait=300)

    root = args.smoke or Path(tempfile.mkdtemp(prefix="ctloop-burst-"))
    env = child_environment(
        DATA_DIR=str(root / "data"),
        ARTIFACTS_DIR=str(root / "artifacts"),
        SECRETS_DIR=str(root / "secrets"),
        RETRAIN_EVERY=str(args.every),
        API_TOKEN=TOKEN,
        SERVING_FEEDBACK_RATE_LIMIT="1000000/second",
        SERVING_WORKERS=str(args.workers),
        SERVING_HOST="127.0.0.1",
    )
    if args.scratch_every is not None:
        env["SCRATCH_EVERY"] = str(args.scratch_every)
    if args.checkout is not None:  # its packages first: they shadow this checkout's install
        checkout = args.checkout.resolve()
        env["PYTHONPATH"] = f"{checkout}:{checkout / 'scripts'}"
    if not args.smoke:  # a smoke run's is built
        started = time.perf_counter()
        build(root, env)
        print(f"reference and first model built in {time.perf_counter() - started:.0f} s ({root})")
    port = free_port()
    server = Server(
        "serving", [sys.executable, "-m", "serving"], {**env, "SERVING_PORT": str(port)}, port,
        root / "server.log", "/ready",
    )  # fmt: skip
    # `python -m` puts its folder first on the path: the checkout under test is where it runs.
    server.cwd = args.checkout.resolve() if args.checkout is not None else REPO
    bodies = feedback_bodies(root / "data" / "samples")
    ledger = RetrainLog(root / "artifacts" / "retrains.jsonl")
    with server:
        seconds, statuses = asyncio.run(
            burst(server.url, bodies, args.feedbacks, args.clients, args.seconds)
        )
        ended = time.perf_counter()
        rows = loopback.get(f"{server.url}/model", timeout=30).json()["production_rows"]
        last_trigger = rows // args.every * args.every
        print(
            f"burst: {args.feedbacks} feedbacks from {args.clients} clients in {seconds:.1f} s "
            f"({args.feedbacks / seconds:.0f}/s), replies {statuses}, {rows} rows, "
            f"last trigger {last_trigger}"
        )
        decided_at = None
        while time.perf_counter() - ended < args.wait:
            if ledger.last_decided_trigger() >= last_trigger:
                decided_at = time.perf_counter() - ended
                break
            time.sleep(0.5)
        backlog = loopback.get(f"{server.url}/model", timeout=30).json()["retrain_backlog"]
    decisions = ledger.decisions()
    trained = [d for d in decisions if d["decision"] in ("promoted", "rejected", "failed")]
    superseded = sum(d["decision"] == "superseded" for d in decisions)
    durations = [d["seconds"] for d in trained if isinstance(d.get("seconds"), int | float)]
    when = f"{decided_at:.1f} s" if decided_at is not None else f"not within {args.wait:.0f} s"
    print(f"last trigger decided {when} after the burst's last reply; backlog then {backlog}")
    print(
        f"decisions: {len(trained)} retrains ({sum(d['decision'] == 'promoted' for d in trained)} "
        f"promoted, {sum(d['decision'] == 'failed' for d in trained)} failed, modes "
        f"{sorted({str(d.get('mode')) for d in trained})}), {superseded} triggers superseded; "
        f"retrain seconds median {statistics.median(durations):.1f}, max {max(durations):.1f}"
        if durations
        else f"decisions: {len(decisions)}"
    )


if __name__ == "__main__":
    main()
