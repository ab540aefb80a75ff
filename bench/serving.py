"""Serving benchmark: the product against the HTTP ceiling, the naive pattern and BentoML.

    make bench                 # or: .venv/bin/python bench/serving.py [--seconds 10]
    .venv/bin/python -m bench.serving --smoke DIR   # every scenario in seconds, without BentoML

Everything runs in one go on this machine, server and load generator (wrk, one thread) sharing
its cores, and the figures go to standard output and docs/benchmarks.md (a smoke run's to
DIR/benchmarks.md: one-second runs at 32 connections).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from PIL import Image

from bench import smoke
from bench.loadgen import Run, wrk
from bench.procs import Server, free_port, rss_mib
from bench.report import write_report
from bench.retraining import Feeder
from ctloop.prod_data import ProductionData
from ctloop.retrain_log import RetrainLog
from harness import loopback
from harness.processes import trainer_pids
from pictures import encode

REPO = Path(__file__).resolve().parents[1]
BENCH_VENV = REPO / ".venv-bench"
BENCH_TOKEN = "bench-token"  # noqa: S105 - the throwaway token of a benchmark server


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does."""

    seconds: float = 10  # each wrk run
    warm_seconds: float = 3  # a wrk warm-up before a server is measured (0: none)
    connections: tuple[int, ...] = (1, 8, 32, 64)  # each /predict sweep
    two_worker_connections: tuple[int, ...] = (32, 64)
    feedback_connections: tuple[int, ...] = (8, 32)
    memory_requests: int = 10_000  # sent before a worker's memory is read again
    bentoml: bool = True  # only if .venv-bench exists (make bench)


# A smoke run: one-second runs, at 32 connections (the report's figures), no BentoML.
SMOKE = Sizes(
    seconds=1,
    warm_seconds=0,
    connections=(32,),
    two_worker_connections=(32,),
    feedback_connections=(8,),
    memory_requests=300,
    bentoml=False,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="length of each wrk run")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--report-only", action="store_true", help="re-render from the .json")
    args = smoke.parse(parser)
    if args.report_only:
        write_report(args.output, json.loads(args.output.with_suffix(".json").read_text()))
        return
    if args.smoke:
        args.output = args.smoke / "benchmarks.md"
        results = Bench(args.smoke, SMOKE).run_all()
    else:
        with tempfile.TemporaryDirectory(prefix="ctloop-bench-") as tmp:
            sizes = Sizes(seconds=args.seconds, warm_seconds=min(3.0, args.seconds))
            results = Bench(Path(tmp), sizes).run_all()
    args.output.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    write_report(args.output, results)
    print(f"\nwritten to {args.output} and {args.output.with_suffix('.json')}")


class Bench:
    def __init__(self, root: Path, sizes: Sizes) -> None:
        self.root, self.sizes, self.seconds = root, sizes, sizes.seconds
        self.data, self.artifacts = root / "data", root / "artifacts"
        self.results: dict = {"seconds": sizes.seconds, "runs": [], "notes": {}}
        self.bodies = root / "bodies"
        self.bodies.mkdir(exist_ok=True)

    # -- set-up ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        if not (self.artifacts / "current.json").exists():  # a smoke run's is built
            subprocess.run(
                [sys.executable, "-m", "ctloop", "init"],
                env=self.env(),
                check=True,
                capture_output=True,
            )
        sample = sorted((self.data / "samples" / "3").glob("*.png"))[0]
        digit = Image.open(sample).convert("L").resize((28, 28), Image.Resampling.BILINEAR)
        self.png = encode(digit)
        encoded = base64.b64encode(self.png).decode()
        (self.bodies / "predict.json").write_text(json.dumps({"image": encoded}))
        (self.bodies / "feedback.json").write_text(json.dumps({"image": encoded, "target": "3"}))
        boundary = "ctloopbenchboundary"
        (self.bodies / "predict.multipart").write_bytes(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="digit.png"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + self.png
            + f"\r\n--{boundary}--\r\n".encode()
        )
        self.multipart_type = f"multipart/form-data; boundary={boundary}"
        self.results["payload"] = (
            f"a 28x28 PNG digit ({len(self.png)} bytes), JSON base64 or multipart"
        )

    def env(self, **extra: str) -> dict:
        return {
            **os.environ,
            "DATA_DIR": str(self.data),
            "ARTIFACTS_DIR": str(self.artifacts),
            "SECRETS_DIR": str(self.root / "secrets"),
            "API_TOKEN": BENCH_TOKEN,
            # The load generator is one client on purpose: measure appends, not the limit.
            "SERVING_FEEDBACK_RATE_LIMIT": "",
            **extra,
        }

    def product(self, workers: int, **extra: str) -> Server:
        port = free_port()
        metrics = self.root / f"metrics-{port}"
        env = self.env(
            SERVING_HOST="127.0.0.1",
            SERVING_PORT=str(port),
            SERVING_WORKERS=str(workers),
            PROMETHEUS_MULTIPROC_DIR=str(metrics),
            **extra,
        )
        log = self.root / f"product-{port}.log"
        return Server(
            f"product x{workers}", [sys.executable, "-m", "serving"], env, port, log, "/ready"
        )

    def uvicorn_app(self, name: str, module: str, workers: int = 1) -> Server:
        port = free_port()
        command = [
            sys.executable, "-m", "uvicorn", module, "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        ]  # fmt: skip
        return Server(name, command, self.env(), port, self.root / f"{name}.log", "/docs")

    def bento(self) -> Server | None:
        bentoml = BENCH_VENV / "bin" / "bentoml"
        if not self.sizes.bentoml:
            self.results["notes"]["bentoml"] = "skipped: a smoke run (make bench compares it)"
            return None
        if not bentoml.exists():
            self.results["notes"]["bentoml"] = f"skipped: {bentoml} missing (make bench creates it)"
            return None
        port = free_port()
        command = [
            str(bentoml),
            "serve",
            "bench.apps.bento_service:DigitService",
            "--port",
            str(port),
        ]
        env = self.env(BENTOML_HOME=str(self.root / "bentoml"), BENTOML_DO_NOT_TRACK="True")
        return Server("bentoml", command, env, port, self.root / "bentoml.log", "/readyz")

    # -- scenarios ------------------------------------------------------------------------------

    def run_all(self) -> dict:
        self.prepare()
        self.results["machine"] = machine()
        self.results["versions"] = versions(bentoml=self.sizes.bentoml)
        body, json_type = self.bodies / "predict.json", "application/json"

        with self.product(workers=1) as server:
            self.results["notes"]["start_to_ready_s"] = round(server.ready_seconds, 2)
            self.check_reply(server)
            self.warm(server, body, json_type)
            self.memory(server, body, json_type, "1 worker")
            self.sweep("1 product /predict JSON (1 worker)", server, body, json_type)
            self.sweep(
                "2 product /predict multipart (1 worker)",
                server,
                self.bodies / "predict.multipart",
                self.multipart_type,
            )
        for name, module in [
            ("3 bare constant route (1 worker)", "bench.apps.bare:app"),
            ("4 naive scikit-learn route (1 worker)", "bench.apps.naive_sklearn:app"),
        ]:
            with self.uvicorn_app(name.split()[1], module) as server:
                self.check_reply(server)
                self.warm(server, body, json_type)
                self.sweep(name, server, body, json_type)
        bento = self.bento()
        if bento is not None:
            with bento as server:
                self.check_reply(server)
                self.warm(server, body, json_type)
                self.sweep("5 BentoML 1.4, defaults", server, body, json_type)
        self.two_workers(body, json_type)
        self.during_retrains(body, json_type)
        self.feedback()
        return self.results

    def sweep(self, scenario: str, server: Server, body: Path, content_type: str) -> None:
        for connections in self.sizes.connections:
            run = wrk(
                scenario, server.url + "/predict", body, content_type, connections, self.seconds
            )
            self.record(run)

    def two_workers(self, body: Path, content_type: str) -> None:
        """The Compose configuration (SERVING_WORKERS=2); who served what is read from the log."""
        with self.product(workers=2) as server:
            self.warm(server, body, content_type)
            self.memory(server, body, content_type, "2 workers")
            for connections in self.sizes.two_worker_connections:
                offset = server.log_path.stat().st_size
                run = wrk(
                    "1b product /predict JSON (2 workers, Compose)",
                    server.url + "/predict",
                    body,
                    content_type,
                    connections,
                    self.seconds,
                )
                self.record(run)
                self.results.setdefault("spread", []).append(
                    {
                        "connections": connections,
                        "requests_by_worker": requests_by_pid(server.log_path, offset),
                    }
                )

    def during_retrains(self, body: Path, content_type: str) -> None:
        """p99 of /predict at rest, then while the server's own trainer retrains back to back:
        feedback rows arrive 20 at a time (RETRAIN_EVERY=20), each batch once the trainer has
        started on the last (bench.retraining)."""
        every = 20
        with self.product(
            workers=1, RETRAIN_EVERY=str(every), SERVING_TRAINER_CHECK_SECONDS="0.5"
        ) as server:
            self.warm(server, body, content_type)
            rest = wrk(
                "6a /predict at rest", server.url + "/predict", body, content_type, 32, self.seconds
            )
            self.record(rest)
            with Feeder(self.data, self.artifacts, every) as feeder:
                feeder.wait_for_training()
                before = decisions(self.artifacts)
                busy = wrk(
                    "6b /predict during back-to-back retrains",
                    server.url + "/predict",
                    body,
                    content_type,
                    32,
                    self.seconds,
                )
                after = decisions(self.artifacts)
                still_training = bool(trainer_pids(self.artifacts))
            self.record(busy)
            feeder.wait_until_decided()
            self.results["retrains"] = {
                "rows": feeder.rows.total,
                "during_window": after - before,
                "trainer_busy_whole_window": still_training,
                "ledger": RetrainLog(self.artifacts / "retrains.jsonl").decisions(),
            }

    def feedback(self) -> None:
        """Durable appends: every acknowledged row must be in prod_data.csv afterwards."""
        prod = self.data / "prod_data.csv"
        prod.unlink(missing_ok=True)
        with self.product(workers=1, RETRAIN_EVERY="100000000") as server:
            self.warm(server, self.bodies / "feedback.json", "application/json", path="/feedback")
            for connections in self.sizes.feedback_connections:
                rows_before = line_count(prod)
                run = wrk(
                    "7 product /feedback (durable appends, 1 worker)",
                    server.url + "/feedback",
                    self.bodies / "feedback.json",
                    "application/json",
                    connections,
                    self.seconds,
                    token=BENCH_TOKEN,
                )
                self.record(run)
                rows_added = line_count(prod) - rows_before
                self.results.setdefault("feedback_rows", []).append(
                    {
                        "connections": connections,
                        "acknowledged": run.requests - run.errors,
                        "rows_added": rows_added,
                    }
                )

    # -- measurements -----------------------------------------------------------------------------

    def warm(self, server: Server, body: Path, content_type: str, path: str = "/predict") -> None:
        if self.sizes.warm_seconds:
            seconds = self.sizes.warm_seconds
            wrk("warm-up", server.url + path, body, content_type, 8, seconds, BENCH_TOKEN)

    def check_reply(self, server: Server) -> None:
        reply = loopback.post(
            server.url + "/predict", json={"image": base64.b64encode(self.png).decode()}, timeout=30
        )
        reply.raise_for_status()
        assert reply.json()["label"] == "3", f"{server.name} answered {reply.json()}"

    def memory(self, server: Server, body: Path, content_type: str, label: str) -> None:
        pids = server.worker_pids()
        at_rest = {pid: round(rss_mib(pid), 1) for pid in pids}
        requests = 0
        while requests < self.sizes.memory_requests:
            seconds = min(3.0, self.seconds)
            requests += wrk(
                "memory", server.url + "/predict", body, content_type, 32, seconds
            ).requests
        after = {pid: round(rss_mib(pid), 1) for pid in pids}
        self.results.setdefault("memory", []).append(
            {
                "server": label,
                "requests": requests,
                "rss_at_rest_mib": list(at_rest.values()),
                "rss_after_mib": list(after.values()),
            }
        )

    def record(self, run: Run) -> None:
        self.results["runs"].append(run.__dict__ | {"rps": run.rps})
        print(
            f"{run.scenario:52} c={run.connections:<3} {run.rps:8.0f} req/s  "
            f"p50 {run.p50_ms:6.2f}  p95 {run.p95_ms:6.2f}  p99 {run.p99_ms:6.2f} ms  "
            f"errors {run.errors}",
            flush=True,
        )


def requests_by_pid(log: Path, offset: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    with log.open("rb") as handle:
        handle.seek(offset)
        for line in handle:
            if b'"event": "request"' in line:
                pid = str(json.loads(line)["pid"])
                counts[pid] = counts.get(pid, 0) + 1
    return counts


def decisions(artifacts: Path) -> int:
    return len(RetrainLog(artifacts / "retrains.jsonl").decisions())


def line_count(path: Path) -> int:
    """Data rows of prod_data.csv, counted by its owner."""
    return ProductionData(path, 0).count_rows_on_disk()


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory) / 1024**2, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
    }


def versions(bentoml: bool = True) -> dict:
    found = {"python": platform.python_version()}
    for name in (
        "fastapi",
        "uvicorn",
        "starlette",
        "pydantic",
        "onnxruntime",
        "numpy",
        "pillow",
        "scikit-learn",
    ):
        found[name] = version(name)
    bento = BENCH_VENV / "bin" / "python"
    if bentoml and bento.exists():
        found["bentoml"] = subprocess.run(
            [str(bento), "-c", "import bentoml; print(bentoml.__version__)"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    found["wrk"] = subprocess.run(
        ["wrk", "--version"], capture_output=True, text=True
    ).stdout.split()[1]
    return found


if __name__ == "__main__":
    main()
