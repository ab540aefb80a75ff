"""What a stranger can make one worker do: each attack of harness.attacks against a real
server (`python -m serving`, one worker, no token sent), with the worker's memory (before, peak,
and one second after), /health's latency on the same worker during the attack (a probe every
20 ms), and what the attacker got (statuses, the largest reply, the slowest one).

    .venv/bin/python -m bench.abuse                          # this checkout
    .venv/bin/python -m bench.abuse --baseline /tmp/before   # and another checkout, same run
    .venv/bin/python -m bench.abuse --smoke DIR              # one small attack, DIR's data

`--baseline` names a checkout of an earlier commit (`git worktree add /tmp/before <commit>`):
its server runs from there (working directory and PYTHONPATH), on the same data, after this
one's. The tables are printed as Markdown (docs/studies/hardening.md keeps them).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import smoke
from bench.procs import free_port
from harness import attacks, loopback
from harness.processes import REPO, ServerProcess

TOKEN = "bench-token"  # noqa: S105 - the throwaway token of a benchmark server


@dataclass(frozen=True)
class Attack:
    name: str
    route: str
    body: Callable[[], tuple[bytes, dict]]  # (content, headers), built once
    concurrency: int = 1


def _json(make: Callable[[], bytes]) -> Callable[[], tuple[bytes, dict]]:
    return lambda: (make(), attacks.JSON)


def _image(make: Callable[[], bytes]) -> Callable[[], tuple[bytes, dict]]:
    return lambda: (b'{"image": "' + base64.b64encode(make()) + b'"}', attacks.JSON)


ATTACKS = (
    Attack("1.3 M-item list (2.6 MB)", "/predict", _json(attacks.long_list)),
    Attack("1 M nested brackets (2 MB)", "/predict", _json(attacks.deep_nesting)),
    Attack("300,000 unknown keys (3.5 MB)", "/predict", _json(attacks.many_keys)),
    Attack("one 3 MB key", "/predict", _json(attacks.long_key)),
    Attack("50,000 multipart parts (2.5 MB)", "/predict", attacks.many_parts),
    Attack("64 images of 512 x 512, 4 batches at once", "/predict", _json(attacks.many_images), 4),
    Attack("4096 x 4096 RGBA PNG (76 KB), 8 at once", "/predict", _image(attacks.big_rgba_png), 8),
    Attack("GIF: 32 x 32 frame, 4096 x 4096 screen, 8 at once", "/predict", _image(
        attacks.gif_on_a_big_canvas), 8),
    Attack("JPEG: 4096 x 4096 header, 32 x 32 data, 8 at once", "/predict", _image(
        attacks.jpeg_header_lies), 8),
    Attack("rollback, no token: 1 M nested brackets", "/model/rollback", _json(
        attacks.deep_nesting)),
)  # fmt: skip


@dataclass
class Row:
    attack: str
    statuses: list[int] = field(default_factory=list)
    reply_bytes: int = 0
    reply_seconds: float = 0.0
    rss_before: float = 0.0
    rss_peak: float = 0.0
    rss_after: float = 0.0
    health_ms: list[float] = field(default_factory=list)


def measure(url: str, pid: int, attack: Attack) -> Row:
    """Run one attack against the server at `url` whose worker is `pid`."""
    content, headers = attack.body()
    row = Row(attack.name, rss_before=_status(pid)["VmRSS"])
    _reset_peak(pid)
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_peak, args=(pid, row, stop), daemon=True)
    prober = threading.Thread(target=_probe_health, args=(url, row, stop), daemon=True)
    sampler.start()
    prober.start()
    time.sleep(0.1)

    def send(_: int) -> tuple[int, int, float]:
        started = time.perf_counter()
        reply = loopback.post(f"{url}{attack.route}", content=content, headers=headers, timeout=300)
        return reply.status_code, len(reply.content), time.perf_counter() - started

    with ThreadPoolExecutor(attack.concurrency) as pool:
        results = list(pool.map(send, range(attack.concurrency)))
    time.sleep(0.1)
    stop.set()
    prober.join()
    sampler.join()
    row.statuses = sorted(status for status, _, _ in results)
    row.reply_bytes = max(size for _, size, _ in results)
    row.reply_seconds = max(seconds for _, _, seconds in results)
    row.rss_peak = max(row.rss_peak, _status(pid).get("VmHWM", 0.0))
    time.sleep(1.0)
    row.rss_after = _status(pid)["VmRSS"]
    return row


def _status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values


def _reset_peak(pid: int) -> None:
    """Start VmHWM over at the current RSS (Linux: 5 > clear_refs); sampling covers the rest."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _sample_peak(pid: int, row: Row, stop: threading.Event) -> None:
    while not stop.is_set():
        row.rss_peak = max(row.rss_peak, _status(pid)["VmRSS"])
        time.sleep(0.01)


def _probe_health(url: str, row: Row, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=300) as http:
        while not stop.is_set():
            started = time.perf_counter()
            http.get("/health").raise_for_status()
            row.health_ms.append((time.perf_counter() - started) * 1000)
            time.sleep(0.02)


def table(rows: list[Row]) -> str:
    lines = [
        "| Attack | Statuses | Largest reply | Slowest reply | Worker RSS before / peak / 1 s "
        "after | /health median / max |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        counts = {status: row.statuses.count(status) for status in sorted(set(row.statuses))}
        statuses = ", ".join(
            f"{n} x {status}" if n > 1 else str(status) for status, n in counts.items()
        )
        lines.append(
            f"| {row.attack} | {statuses} | {_size(row.reply_bytes)} | {row.reply_seconds:.2f} s "
            f"| {row.rss_before:.0f} / {row.rss_peak:.0f} / {row.rss_after:.0f} MB "
            f"| {statistics.median(row.health_ms):.1f} / {max(row.health_ms):.0f} ms |"
        )
    return "\n".join(lines)


def _size(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f} MB"
    return f"{count / 1000:.1f} KB" if count >= 1000 else f"{count} B"


def server(root: Path, checkout: Path) -> ServerProcess:
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(root / "data"),
        "ARTIFACTS_DIR": str(root / "artifacts"),
        "SECRETS_DIR": str(root / "secrets"),
        "API_TOKEN": TOKEN,
        "SERVING_HOST": "127.0.0.1",
        "SERVING_PORT": str(port),
        "SERVING_WORKERS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(root / f"metrics-{port}"),
    }
    if checkout != REPO:  # the baseline's code first (python -m puts the working directory first)
        env["PYTHONPATH"] = f"{checkout}{os.pathsep}{checkout / 'scripts'}"
    process = ServerProcess(
        [sys.executable, "-m", "serving"], env, root / f"server-{port}.log", cwd=checkout
    )
    process.name, process.health = f"the serving API ({checkout})", "/ready"
    process.url = f"http://127.0.0.1:{port}"
    return process


# `--smoke`: the harness end to end in seconds (make test runs it).
SMOKE = (Attack("nesting", "/predict", _json(lambda: attacks.deep_nesting(50_000)), 2),)


def run(root: Path, checkout: Path, selected: tuple[Attack, ...] = ATTACKS) -> list[Row]:
    rows = []
    with server(root, checkout) as live:
        pid = live.process.pid  # one worker: uvicorn serves in the launcher's process
        loopback.post(f"{live.url}/predict", content=attacks.many_images(2), headers=attacks.JSON)
        for attack in selected:
            rows.append(measure(live.url, pid, attack))
            print(f"  {checkout.name}: {attack.name}: {rows[-1].statuses}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="a checkout to measure too, first")
    args = smoke.parse(parser)
    if args.smoke:  # one small attack
        print(table(run(args.smoke, REPO, SMOKE)))
        return
    with tempfile.TemporaryDirectory(prefix="ctloop-abuse-") as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "DATA_DIR": str(root / "data"),
            "ARTIFACTS_DIR": str(root / "artifacts"),
        }
        subprocess.run(
            [sys.executable, "-m", "ctloop", "init"], env=env, check=True, capture_output=True
        )
        results = {}
        if args.baseline:
            results[f"baseline ({_commit(args.baseline)})"] = run(root, args.baseline.resolve())
        results[f"this checkout ({_commit(REPO)})"] = run(root, REPO)
    for name, rows in results.items():
        print(f"\n{name}\n\n{table(rows)}")


def _commit(checkout: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip() or "?"  # fmt: skip


if __name__ == "__main__":
    main()
