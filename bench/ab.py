"""/predict before and after a change, in one run: two checkouts served side by side, interleaved.

    .venv/bin/python bench/ab.py --baseline ../baseline-checkout [--rounds 5] [--seconds 10]
    .venv/bin/python -m bench.ab --smoke DIR     # this checkout against itself, one round of 1 s

The baseline is another checkout of this repository with its own `.venv` (`make venv` there;
`git worktree add ../baseline-checkout <revision>` makes one). Each checkout builds its own
reference data and first model, then serves them with its own `python -m serving` (one worker,
started from the checkout's folder). wrk (one thread, 32 connections, a 28x28 PNG as JSON) then
alternates between the two for `--rounds` rounds, so that both see the same machine load; the
script prints each round and the medians, and the candidate/baseline ratio of the medians.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from bench import smoke
from bench.loadgen import Run, wrk
from harness.processes import REPO, ServerProcess, child_environment, free_port
from pictures import encode

CONNECTIONS = 32


class Checkout(ServerProcess):
    """`python -m serving` of one checkout, on its own data, one worker, on a free port."""

    health = "/ready"

    def __init__(self, name: str, folder: Path, python: Path, root: Path, **env: str) -> None:
        self.name, self.folder, self.python, self.root = name, folder, python, root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.environment = child_environment(
            DATA_DIR=str(root / "data"),
            ARTIFACTS_DIR=str(root / "artifacts"),
            SECRETS_DIR=str(root / "secrets"),
            SERVING_HOST="127.0.0.1",
            SERVING_PORT=str(self.port),
            SERVING_WORKERS="1",
            # The same under the names a checkout from before the settings' prefixes reads (a
            # checkout that knows both reads the new ones, without a warning).
            HOST="127.0.0.1",
            PORT=str(self.port),
            WORKERS="1",
            PROMETHEUS_MULTIPROC_DIR=str(root / "metrics"),
            **env,
        )
        # `python -m` from the checkout's folder: an older checkout whose services were not yet
        # installed packages finds them there.
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(
            [str(python), "-m", "serving"], self.environment, root / "serving.log", cwd=folder
        )

    def prepare(self) -> None:
        """Reference data and a first model, built by this checkout's own code."""
        subprocess.run(
            [str(self.python), "-m", "ctloop", "init"],
            cwd=self.folder,
            env=self.environment,
            check=True,
            capture_output=True,
        )


def body_file(root: Path, samples: Path) -> Path:
    digit = Image.open(sorted((samples / "3").glob("*.png"))[0]).convert("L")
    png = encode(digit.resize((28, 28), Image.Resampling.BILINEAR))
    path = root / "predict.json"
    path.write_text(json.dumps({"image": base64.b64encode(png).decode()}))
    return path


def summary(runs: list[Run]) -> dict[str, float]:
    return {
        "rps": statistics.median(run.rps for run in runs),
        "p50_ms": statistics.median(run.p50_ms for run in runs),
        "p99_ms": statistics.median(run.p99_ms for run in runs),
        "errors": sum(run.errors for run in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="the other checkout (required)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10)
    args = smoke.parse(parser, baseline=REPO, rounds=1, seconds=1)
    if args.baseline is None:
        parser.error("--baseline is required")
    baseline_folder = args.baseline.resolve()
    # A smoke run's baseline is this checkout, served by this interpreter.
    baseline_python = Path(sys.executable) if args.smoke else baseline_folder / ".venv/bin/python"
    with tempfile.TemporaryDirectory(prefix="ctloop-ab-", dir=args.smoke) as tmp:
        root = Path(tmp)
        checkouts = {
            "baseline": Checkout("baseline", baseline_folder, baseline_python, root / "a"),
            "candidate": Checkout("candidate", REPO, Path(sys.executable), root / "b"),
        }
        for checkout in checkouts.values():
            if args.smoke:  # both on copies of its workspace
                smoke.copy(args.smoke, checkout.root)
            else:
                checkout.prepare()
        body = body_file(root, root / "b" / "data" / "samples")
        runs: dict[str, list[Run]] = {name: [] for name in checkouts}
        for checkout in checkouts.values():
            checkout.start()
        try:
            warm = min(2, args.seconds)
            for checkout in checkouts.values():  # warm-up, not counted
                wrk("warm", checkout.url + "/predict", body, "application/json", CONNECTIONS, warm)
            for number in range(1, args.rounds + 1):
                for name, checkout in checkouts.items():
                    run = wrk(
                        name, checkout.url + "/predict", body, "application/json",
                        CONNECTIONS, args.seconds,
                    )  # fmt: skip
                    runs[name].append(run)
                    print(
                        f"round {number} {name:9} {run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms"
                        f"  p99 {run.p99_ms:7.2f} ms  errors {run.errors}",
                        flush=True,
                    )
        finally:
            for checkout in checkouts.values():
                checkout.stop()
    medians = {name: summary(found) for name, found in runs.items()}
    print(f"\nmedians over {args.rounds} rounds of {args.seconds:g} s, {CONNECTIONS} connections:")
    for name, figures in medians.items():
        print(
            f"  {name:9} {figures['rps']:8.0f} req/s  p50 {figures['p50_ms']:6.2f} ms  "
            f"p99 {figures['p99_ms']:7.2f} ms  errors {figures['errors']:.0f}"
        )
    ratio = medians["candidate"]["rps"] / medians["baseline"]["rps"]
    p99 = medians["candidate"]["p99_ms"] / medians["baseline"]["p99_ms"]
    print(f"  candidate/baseline: throughput x{ratio:.3f}, p99 x{p99:.3f}")


if __name__ == "__main__":
    main()
