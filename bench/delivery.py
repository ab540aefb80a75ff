"""/predict with a shadow answering 100 % of requests against no stage at all, in one run.

    .venv/bin/python -m bench.delivery [--rounds 6] [--seconds 10]
    .venv/bin/python -m bench.delivery --smoke DIR    # one round of 1 s, into DIR/benchmarks.md

One reference build and first model, copied twice; in one copy a second version (the same
training, registered as tests do) is put on a shadow stage at 100 %. Both are served by this
checkout's `python -m serving` (one worker each) and wrk (one thread, 32 connections, a 28x28
PNG as JSON) alternates between them, ABBA order, so both see the same machine load. Prints each
round, the medians and the shadow/plain ratios, and writes them into docs/benchmarks.md (the
block between the `delivery` markers, which `make bench` keeps).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from bench import smoke
from bench.ab import CONNECTIONS, Checkout, body_file, summary
from bench.loadgen import Run, wrk
from bench.report import write_block
from ctloop.registry import ModelRegistry
from harness import loopback
from harness.data import make_settings
from harness.delivery import register_challenger
from harness.processes import REPO, child_environment

BEGIN, END = "<!-- delivery -->", "<!-- /delivery -->"
TARGET = 1.3


def build(root: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "ctloop", "init"],
        env=child_environment(DATA_DIR=str(root / "data"), ARTIFACTS_DIR=str(root / "artifacts")),
        check=True,
        capture_output=True,
    )


def shadow_figures(url: str) -> tuple[float, float]:
    """(images the shadow answered, of which it agreed) from the server's /metrics."""
    answered = agreed = 0.0
    for line in loopback.get(f"{url}/metrics").text.splitlines():
        if line.startswith("ctloop_shadow_predictions_total{"):
            value = float(line.rsplit(" ", 1)[1])
            answered += value
            agreed += value if 'agreement="agree"' in line else 0.0
    return answered, agreed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = smoke.parse(parser, rounds=1, seconds=1)
    if args.smoke:
        args.output = args.smoke / "benchmarks.md"
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ctloop-delivery-", dir=args.smoke) as tmp:
        root = Path(tmp)
        if args.smoke:
            smoke.copy(args.smoke, root / "plain")
        else:
            build(root / "plain")
        shutil.copytree(root / "plain", root / "shadow")
        settings = make_settings(root / "shadow")
        challenger = register_challenger(settings)
        ModelRegistry(settings.artifacts_dir).start_stage(challenger, "shadow", 100.0, "bench", 0)
        servers = {
            "plain": Checkout("plain", REPO, Path(sys.executable), root / "plain"),
            "shadow": Checkout("shadow", REPO, Path(sys.executable), root / "shadow"),
        }
        body = body_file(root, root / "plain" / "data" / "samples")
        runs: dict[str, list[Run]] = {name: [] for name in servers}
        for server in servers.values():
            server.start()
        try:
            stage = loopback.get(f"{servers['shadow'].url}/model").json()["delivery"]["stage"]
            assert stage and stage["percent"] == 100.0, stage
            warm = min(2, args.seconds)
            for server in servers.values():  # warm-up, not counted
                wrk("warm", server.url + "/predict", body, "application/json", CONNECTIONS, warm)
            for number in range(1, args.rounds + 1):
                order = ["plain", "shadow"] if number % 2 else ["shadow", "plain"]
                for name in order:
                    run = wrk(
                        name, servers[name].url + "/predict", body, "application/json",
                        CONNECTIONS, args.seconds,
                    )  # fmt: skip
                    runs[name].append(run)
                    print(
                        f"round {number} {name:6} {run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms"
                        f"  p99 {run.p99_ms:6.2f} ms  errors {run.errors}",
                        flush=True,
                    )
            answered, agreed = shadow_figures(servers["shadow"].url)
        finally:
            for server in servers.values():
                server.stop()
    figures = {name: summary(values) for name, values in runs.items()}
    requests = sum(run.requests for run in runs["shadow"])
    load = (load_before, os.getloadavg()[0])
    block = report(figures, args, answered, agreed, requests, load)
    print("\n".join(block))
    write_block(args.output, block, BEGIN, END)


def report(
    figures: dict, args, answered: float, agreed: float, requests: int, load: tuple[float, float]
) -> list[str]:
    plain, shadow = figures["plain"], figures["shadow"]
    p99_ratio = shadow["p99_ms"] / plain["p99_ms"]
    return [
        BEGIN,
        "## /predict with a shadow at 100 % (progressive delivery)",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python -m bench.delivery` "
        f"on {os.cpu_count()} cores (load average {load[0]:.1f} before, {load[1]:.1f} after: "
        "other work shares them, and the p99 of single rounds moves with it): one worker per "
        f"server, wrk -t1 -c{CONNECTIONS}, "
        f"{args.rounds} rounds of {args.seconds:g} s alternating (ABBA) between a server with no "
        "stage and one whose challenger shadows every request (its head run on the champion's "
        "embeddings, in batches, after the replies are sent). Medians of the rounds:",
        "",
        "| Server | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {f['rps']:,.0f} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['errors']} |"
            for name, f in (("no stage", plain), ("shadow 100 %", shadow))
        ),
        "",
        f"- p99 ratio shadow / no stage: **{p99_ratio:.2f}** (target ≤ {TARGET}: "
        f"{'met' if p99_ratio <= TARGET else 'NOT met'}); p50 ratio "
        f"{shadow['p50_ms'] / plain['p50_ms']:.2f}; throughput ratio "
        f"{shadow['rps'] / plain['rps']:.2f}.",
        f"- The shadow answered {answered:,.0f} images (agreeing with the champion on "
        f"{agreed / answered if answered else 0:.1%}) while wrk counted {requests:,} timed "
        "requests on that server (warm-up included in the former).",
        END,
    ]


if __name__ == "__main__":
    main()
