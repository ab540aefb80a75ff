"""wrk, driven with a Lua script that POSTs a fixed body and prints its figures as JSON."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).with_name("wrk") / "post.lua"


@dataclass
class Run:
    scenario: str
    connections: int
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    command: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def wrk(
    scenario: str,
    url: str,
    body: Path,
    content_type: str,
    connections: int,
    seconds: float,
    token: str = "",
) -> Run:
    """One wrk run (one thread: the server has the other core)."""
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
        "-s", str(LUA), url,
    ]  # fmt: skip
    env = {
        **os.environ,
        "BENCH_BODY": str(body),
        "BENCH_CONTENT_TYPE": content_type,
        "BENCH_TOKEN": token,
    }
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    figures = json.loads([line for line in output.splitlines() if line.startswith("{")][-1])
    return Run(
        scenario=scenario,
        connections=connections,
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        errors=figures["status_errors"] + figures["socket_errors"],
        p50_ms=figures["p50_us"] / 1000,
        p95_ms=figures["p95_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        command=" ".join(command[:-1]) + f" {url}",
    )
