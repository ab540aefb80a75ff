"""How many durable feedback rows per second one prod_data.csv takes, whoever writes them.

    python bench/feedback_writer.py [--folder DIR] [--seconds 5] [--writers 1 2 4]
    python -m bench.feedback_writer --smoke DIR    # 1 and 2 writers, one round of 0.5 s, in DIR
    python bench/feedback_writer.py --database-url postgresql://...   # the PostgreSQL store

Every API replica (and every worker in it) appends to the same data/prod_data.csv through
`ctloop.prod_data.ProductionData.append`: the file lock, the checks, one write, one fsync. This
runs that call in 1, 2 and 4 processes at once on a folder (default: a new one in the system's
temporary folder: check that it is a disk, not a tmpfs) and prints the rows per second each
count reached, the median of --rounds rounds. Whatever the number of writers, the lock lets one
append at a time: the total is the ceiling of the feedback rate on that storage, before HTTP and
embedding costs (for those, see the /feedback rows of docs/benchmarks.md). Run it on a mounted
NFS or CephFS folder to measure a ReadWriteMany class (docs/kubernetes.md, "Scaling on Kubernetes").
With --database-url, the same through `ctloop.prod_db` (one transaction per row, DATABASE_URL).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from bench import smoke
from ctloop.prod_data import FeedbackStore, ProductionData, ProductionRow

COMPONENTS = 32


def store(target: str) -> FeedbackStore:
    """The file at that path, or the PostgreSQL database at that URL."""
    if target.startswith("postgresql://"):
        from ctloop.prod_db import PostgresProductionData

        return PostgresProductionData(target, COMPONENTS)
    return ProductionData(Path(target), COMPONENTS)


def writer(target: str, seconds: float, start: float, counts) -> None:
    data = store(target)
    embedding = np.random.default_rng().normal(size=COMPONENTS).astype(np.float32)
    while time.time() < start:
        time.sleep(0.001)
    written = 0
    while time.time() < start + seconds:
        data.append(ProductionRow(embedding, "3", "3", "v0001", uuid.uuid4().hex))
        written += 1
    counts.put(written)


def measure(target: str, writers: int, seconds: float) -> tuple[float, int]:
    """Rows per second all writers reached together, and the rows the store holds."""
    if not target.startswith("postgresql://"):
        target = str(Path(target) / f"prod_data-{writers}-{uuid.uuid4().hex[:6]}.csv")
    store(target).repair()  # header or schema written, as the API does at start
    before = store(target).count_rows_on_disk()
    counts = multiprocessing.Queue()
    start = time.time() + 0.5
    processes = [
        multiprocessing.Process(target=writer, args=(target, seconds, start, counts))
        for _ in range(writers)
    ]
    for process in processes:
        process.start()
    total = sum(counts.get() for _ in processes)
    for process in processes:
        process.join()
    on_disk = store(target).count_rows_on_disk() - before
    assert on_disk == total, f"{total} rows acknowledged, {on_disk} saved"
    return total / seconds, on_disk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, help="where prod_data.csv goes")
    parser.add_argument("--database-url", help="a PostgreSQL URL instead of a folder")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4])
    args = smoke.parse(parser, workspace=False, seconds=0.5, rounds=1, writers=[1, 2])
    if args.smoke:
        args.folder = args.smoke
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        target = args.database_url or folder
        where = "PostgreSQL" if args.database_url else folder
        print(f"feedback appends on {where}, {args.seconds:g} s x {args.rounds} rounds")
        for writers in args.writers:
            rates = [measure(target, writers, args.seconds)[0] for _ in range(args.rounds)]
            print(
                f"{writers} writer(s): median {statistics.median(rates):,.0f} durable rows/s "
                f"(rounds: {', '.join(f'{rate:,.0f}' for rate in rates)})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
