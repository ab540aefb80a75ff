"""One real retrain (`python -m ctloop retrain`, the process the API starts) at 1,000 and 100,000
production rows, in both modes: wall time, training time and peak memory.

    .venv/bin/python -m bench.retrain_cost [--sizes 1000 100000] [--repeats 3]

A private stack is built once (`ctloop init`); for each size N, prod_data.csv is written with N
feedback rows (the reference embeddings with a little noise) and retrains.jsonl with the history
such a stack has by then (a decision for every multiple of k, a check every TRIGGER_CHECK_ROWS
rows), so the one retrain due is the trigger at N. Two states: `far`, the served version is the
first one (every row is newer: a fine-tune's window is at its FINETUNE_WINDOW_ROWS cap, the worst
case), and `near`, the served version was trained by a real retrain at N - k (the loop's steady
state: a window of k rows). Each run starts from a fresh copy of its state. Wall time includes the
process' imports; peak memory is the process' maximum resident set (GNU time, `apt-get install
time`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ctloop.config import CoreSettings
from ctloop.reference import read_reference
from ctloop.retrain_log import RetrainLog
from ctloop.tables import embedding_row, format_row, prod_header


def run_ctloop(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one `python -m ctloop` process (GNU time's %M)."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "ctloop", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ctloop {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return wall, int(done.stderr.strip().splitlines()[-1]) / 1024


def write_state(settings: CoreSettings, rows: int, rng: np.random.Generator) -> None:
    """prod_data.csv with `rows` rows and the ledger of a stack that decided every trigger
    before the last one."""
    n = read_reference(settings.ref_data_path).embeddings.shape[1]
    settings.prod_data_path.write_bytes(format_row(prod_header(n)))
    append_rows(settings, rows, rng)
    decided_history(settings, rows)


def append_rows(settings: CoreSettings, rows: int, rng: np.random.Generator) -> None:
    """`rows` feedback rows: reference embeddings with a little noise, answered by v0001."""
    reference = read_reference(settings.ref_data_path)
    n = reference.embeddings.shape[1]
    with settings.prod_data_path.open("ab") as handle:
        for start in range(0, rows, 10_000):
            count = min(10_000, rows - start)
            source = rng.integers(0, len(reference.targets), count)
            noise = rng.normal(0, 0.05, (count, n)).astype(np.float32)
            embeddings = reference.embeddings[source] + noise
            targets = reference.targets[source]
            handle.write(
                b"".join(
                    embedding_row(row, [t, t, "v0001", "2026-01-01T00:00:00.000Z", f"r{i}", ""])
                    for i, (row, t) in enumerate(zip(embeddings, targets, strict=True), start)
                )
            )


def decided_history(settings: CoreSettings, rows: int) -> None:
    """retrains.jsonl as the loop leaves it at `rows`: a check every TRIGGER_CHECK_ROWS rows and
    a decision for every multiple of k before `rows`."""
    k, every = settings.retrain_every, settings.trigger_check_rows
    lines = []
    for at in range(every, rows, every):
        lines.append({"event": "check", "rows": at, "window_rows": 100, "fired": []})
        if at % k == 0:
            lines.append({"trigger_rows": at, "decision": "superseded", "reason": "bench"})
    settings.retrain_log_path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["finetune", "scratch"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="retrain-cost-") as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "DATA_DIR": str(root / "base" / "data"),
            "ARTIFACTS_DIR": str(root / "base" / "artifacts"),
            "OPENBLAS_NUM_THREADS": "1",
        }
        wall, _ = run_ctloop(["init"], env)
        print(f"ctloop init (reference + first model): {wall:.1f} s", flush=True)
        rng = np.random.default_rng(0)
        results: dict[tuple[str, int], list[dict]] = {}
        for size in args.sizes:
            states = prepare(root, size, env, rng)
            for repeat in range(args.repeats):
                # interleaved: the machine's load hits every case alike
                for case, state in states.items():
                    for mode in args.modes if case == "far" else ["finetune"]:
                        key = (f"{mode}, {case}" if mode == "finetune" else mode, size)
                        wall, peak, decision = measure(root / f"run-{size}", state, env, mode)
                        results.setdefault(key, []).append({"wall": wall, "peak": peak, **decision})
                        print(
                            f"  {key[0]:20} run {repeat + 1}: {wall:.2f} s wall, "
                            f"{decision.get('train_seconds')} s training, {peak:.0f} MB peak, "
                            f"{decision.get('training_rows')} rows trained on, "
                            f"{decision['decision']}",
                            flush=True,
                        )
        report(results, args.sizes)


def prepare(root: Path, size: int, env: dict[str, str], rng: np.random.Generator) -> dict:
    """Two states at `size` rows: the served version is the first one (`far`: every row is
    newer, so a fine-tune's window is at its cap) or was trained at size - k (`near`: the
    loop's steady state, a window of k rows)."""
    states = {}
    for case in ("far", "near"):
        state = root / f"state-{size}-{case}"
        shutil.copytree(root / "base", state)
        settings = CoreSettings(data_dir=state / "data", artifacts_dir=state / "artifacts")
        k = settings.retrain_every
        write_state(settings, size if case == "far" else size - k, rng)
        if case == "near":  # a real retrain at size - k, then k more rows
            # promoted whatever the gate says: the state is a served version k rows behind
            run_ctloop(["retrain"], {**env, **paths(state), "PROMOTION_POLICY": "always"})
            last = RetrainLog(settings.retrain_log_path).last_decision()
            print(f"{size} rows, near: the retrain at {size - k} was {last['decision']}")
            append_rows(settings, k, rng)
        mb = settings.prod_data_path.stat().st_size / 1e6
        print(f"{size} rows ({case}): prod_data.csv {mb:.1f} MB", flush=True)
        states[case] = state
    return states


def measure(run: Path, state: Path, env: dict[str, str], mode: str) -> tuple:
    """One `ctloop retrain` on a fresh copy of `state`: wall s, peak MB, its decision line."""
    shutil.copytree(state, run)
    try:
        environment = {**env, **paths(run), "RETRAIN_MODE": mode, "RETRAIN_NICE": "0"}
        wall, peak = run_ctloop(["retrain"], environment)
        decision = RetrainLog(run / "artifacts" / "retrains.jsonl").last_decision()
    finally:
        shutil.rmtree(run)
    return wall, peak, decision


def paths(root: Path) -> dict[str, str]:
    return {"DATA_DIR": str(root / "data"), "ARTIFACTS_DIR": str(root / "artifacts")}


def report(results: dict, sizes: list[int]) -> None:
    small, large = min(sizes), max(sizes)
    print(
        f"\n| Retrain | Rows trained on | {small:,} rows: wall s | training s | peak MB "
        f"| {large:,} rows: wall s | training s | peak MB | wall ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case in dict.fromkeys(key[0] for key in results):
        cells = []
        for size in (small, large):
            runs = results[(case, size)]
            cells += [
                statistics.median(r["wall"] for r in runs),
                statistics.median(r["train_seconds"] for r in runs),
                statistics.median(r["peak"] for r in runs),
            ]
        trained = statistics.median(r["training_rows"] for r in results[(case, large)])
        print(
            f"| {case} | {trained:,.0f} | {cells[0]:.2f} | {cells[1]:.2f} | {cells[2]:.0f} | "
            f"{cells[3]:.2f} | {cells[4]:.2f} | {cells[5]:.0f} | {cells[3] / cells[0]:.2f} |"
        )


if __name__ == "__main__":
    main()
