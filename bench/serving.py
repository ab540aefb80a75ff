"""Serving benchmark: the product against the HTTP ceiling, the naive pattern and BentoML.

    make bench                 # or: .venv/bin/python bench/serving.py [--seconds 10]

Everything runs in one go on this machine, server and load generator (wrk, one thread) sharing
its cores, and the figures go to standard output and docs/benchmarks.md.
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
import time
from importlib.metadata import version
from pathlib import Path

import httpx
from PIL import Image

from bench.loadgen import Run, wrk
from bench.procs import Server, free_port, rss_mib
from bench.report import write_report
from ctloop.prod_data import ProductionData
from ctloop.retrain_log import RetrainLog
from pictures import encode

REPO = Path(__file__).resolve().parents[1]
BENCH_VENV = REPO / ".venv-bench"
CONCURRENCIES = (1, 8, 32, 64)
BENCH_TOKEN = "bench-token"  # noqa: S105 - the throwaway token of a benchmark server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="length of each wrk run")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--report-only", action="store_true", help="re-render from the .json")
    args = parser.parse_args()
    if args.report_only:
        write_report(args.output, json.loads(args.output.with_suffix(".json").read_text()))
        return
    with tempfile.TemporaryDirectory(prefix="ctloop-bench-") as tmp:
        bench = Bench(Path(tmp), args.seconds)
        results = bench.run_all()
    args.output.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    write_report(args.output, results)
    print(f"\nwritten to {args.output} and {args.output.with_suffix('.json')}")


class Bench:
    def __init__(self, root: Path, seconds: float) -> None:
        self.root, self.seconds = root, seconds
        self.data, self.artifacts = root / "data", root / "artifacts"
        self.results: dict = {"seconds": seconds, "runs": [], "notes": {}}
        self.bodies = root / "bodies"
        self.bodies.mkdir()

    # -- set-up ---------------------------------------------------------------------------------

    def prepare(self) -> None:
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
        self.results["versions"] = versions()
        body, json_type = self.bodies / "predict.json", "application/json"

        with self.product(workers=1) as server:
            self.results["notes"]["start_to_ready_s"] = round(self.time_to_ready(workers=1), 2)
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
        for connections in CONCURRENCIES:
            run = wrk(
                scenario, server.url + "/predict", body, content_type, connections, self.seconds
            )
            self.record(run)

    def two_workers(self, body: Path, content_type: str) -> None:
        """The Compose configuration (SERVING_WORKERS=2); who served what is read from the log."""
        with self.product(workers=2) as server:
            self.warm(server, body, content_type)
            self.memory(server, body, content_type, "2 workers")
            for connections in (32, 64):
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
        """p99 of /predict at rest, then while `ctloop retrain` works through 30 retrains."""
        with self.product(workers=1, RETRAIN_EVERY="20") as server:
            self.warm(server, body, content_type)
            rest = wrk(
                "6a /predict at rest", server.url + "/predict", body, content_type, 32, self.seconds
            )
            self.record(rest)
            fill_production_rows(self.data, self.artifacts, rows=600)
            trainer = subprocess.Popen(
                [sys.executable, "-m", "ctloop", "retrain"],
                env=self.env(RETRAIN_EVERY="20", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(2.5)  # past the trainer's imports: it is training from here on
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
            still_training = trainer.poll() is None
            self.record(busy)
            trainer.wait()
            self.results["retrains"] = {
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
            for connections in (8, 32):
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
        wrk(
            "warm-up", server.url + path, body, content_type, 8, min(3.0, self.seconds), BENCH_TOKEN
        )

    def check_reply(self, server: Server) -> None:
        reply = httpx.post(
            server.url + "/predict", json={"image": base64.b64encode(self.png).decode()}, timeout=30
        )
        reply.raise_for_status()
        assert reply.json()["label"] == "3", f"{server.name} answered {reply.json()}"

    def memory(self, server: Server, body: Path, content_type: str, label: str) -> None:
        pids = server.worker_pids()
        at_rest = {pid: round(rss_mib(pid), 1) for pid in pids}
        requests = 0
        while requests < 10_000:
            requests += wrk("memory", server.url + "/predict", body, content_type, 32, 3).requests
        after = {pid: round(rss_mib(pid), 1) for pid in pids}
        self.results.setdefault("memory", []).append(
            {
                "server": label,
                "requests": requests,
                "rss_at_rest_mib": list(at_rest.values()),
                "rss_after_mib": list(after.values()),
            }
        )

    def time_to_ready(self, workers: int) -> float:
        server = self.product(workers=workers)
        try:
            return server.start().ready_seconds
        finally:
            server.stop()

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


def fill_production_rows(data: Path, artifacts: Path, rows: int) -> None:
    """prod_data.csv with `rows` real feedback rows (the unseen images, embedded, true classes)."""
    from ctloop.dataset import load_samples
    from ctloop.predict import load_model
    from ctloop.preprocess import preprocess_many
    from ctloop.prod_data import ProductionData, ProductionRow
    from ctloop.registry import ModelRegistry

    model = load_model(ModelRegistry(artifacts).load())
    samples = load_samples(data / "samples")
    embeddings, labels, _ = model.predict_pixels(preprocess_many(samples.images))
    store = ProductionData(data / "prod_data.csv", embeddings.shape[1])
    for index in range(rows):
        i = index % len(samples)
        store.append(
            ProductionRow(
                embeddings[i], samples.labels[i], str(labels[i]), model.version, f"bench-{index}"
            )
        )


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


def versions() -> dict:
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
    if bento.exists():
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
