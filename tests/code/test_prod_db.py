"""The feedback rows in PostgreSQL (DATABASE_URL), against a real server started by the tests:
the same durability as the file (concurrent writers, a writer killed mid-append, nothing
acknowledged lost, no row number twice), the same answers, the export, the single trainer."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from filelock import Timeout

from ctloop.prod_data import ProductionData, ProductionDataError, ProductionRow
from ctloop.tables import format_row, prod_header

N = 8
WORKERS, EACH = 4, 150


def row(worker: int, index: int) -> ProductionRow:
    return ProductionRow(
        embedding=np.full(N, worker + index / 1000, dtype=np.float32),
        target=str(worker),
        prediction=str(worker),
        model_version="v0001",
        request_id=f"{worker}-{index}",
        timestamp="2026-01-01T00:00:00.000Z",
    )


@pytest.fixture
def url(database_url: str) -> str:
    """An empty database on a real server (tests/conftest.py)."""
    return database_url


def store(url: str):
    from ctloop.prod_db import PostgresProductionData

    return PostgresProductionData(url, N)


def append_many(url: str, worker: int, count: int, queue) -> None:
    target = store(url)
    queue.put([target.append(row(worker, index)) for index in range(count)])


def test_concurrent_processes_lose_nothing_and_number_rows_uniquely(url: str) -> None:
    store(url).repair()  # the schema once, as the API's start does
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=append_many, args=(url, w, EACH, queue)) for w in range(WORKERS)
    ]
    for process in workers:
        process.start()
    numbers = sorted(n for _ in workers for n in queue.get(timeout=120))
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert numbers == list(range(1, WORKERS * EACH + 1)), "each append its own number, gapless"
    rows = store(url).read_rows()
    assert rows.row_numbers is not None
    assert rows.row_numbers.tolist() == numbers
    assert sorted(rows.columns["request_id"].tolist()) == sorted(
        f"{w}-{i}" for w in range(WORKERS) for i in range(EACH)
    )
    assert store(url).rows() == WORKERS * EACH


def test_the_same_rows_and_answers_as_the_file(url: str, tmp_path: Path) -> None:
    file, database = ProductionData(tmp_path / "prod_data.csv", N), store(url)
    for index in range(30):
        assert file.append(row(index % 3, index)) == database.append(row(index % 3, index))

    for first, last in ((1, None), (5, 9), (28, 40), (31, None)):
        a, b = file.read_rows(first, last), database.read_rows(first, last)
        assert np.array_equal(a.embeddings, b.embeddings)
        assert a.targets.tolist() == b.targets.tolist()
        assert {k: v.tolist() for k, v in a.columns.items()} == {
            k: v.tolist() for k, v in b.columns.items()
        }
        assert list(a.row_numbers if a.row_numbers is not None else []) == list(
            b.row_numbers if b.row_numbers is not None else []
        )
    assert (
        file.tail(7).columns["request_id"].tolist()
        == database.tail(7).columns["request_id"].tolist()
    )
    assert file.count_rows_on_disk() == database.count_rows_on_disk() == 30
    # The export is the file, byte for byte.
    assert b"".join(database.lines()) == (tmp_path / "prod_data.csv").read_bytes()
    assert b"".join(file.lines()) == (tmp_path / "prod_data.csv").read_bytes()


def killed_mid_append(url: str, acknowledged: str) -> None:
    """Append and record each acknowledged number; the parent kills this process at random."""
    target = store(url)
    with open(acknowledged, "a") as handle:
        for index in range(100_000):
            number = target.append(row(9, index))
            handle.write(f"{number}\n")
            handle.flush()


def test_a_writer_killed_mid_append_loses_nothing_acknowledged(url: str, tmp_path: Path) -> None:
    store(url).repair()
    acknowledged = tmp_path / "acknowledged.txt"
    context = multiprocessing.get_context("spawn")
    for _ in range(3):
        process = context.Process(target=killed_mid_append, args=(url, str(acknowledged)))
        process.start()
        while not acknowledged.exists() or acknowledged.stat().st_size < 200:
            process.join(0.05)
        os.kill(process.pid or 0, signal.SIGKILL)
        process.join(30)
    told = [int(line) for line in acknowledged.read_text().split()]
    saved = store(url).read_rows()
    assert saved.row_numbers is not None
    numbers = saved.row_numbers.tolist()
    assert set(told) <= set(numbers), "every acknowledged row is saved"
    assert numbers == list(range(1, len(numbers) + 1)), "gapless, each number once"
    assert store(url).append(row(1, 1)) == len(numbers) + 1, "appends go on"


def test_an_unreachable_database_refuses_appends_and_recovers(url: str) -> None:
    broken = url.rsplit("/", 1)[0] + "/no_such_database"
    target = store(broken)
    with pytest.raises(ProductionDataError, match="no_such_database") as raised:
        target.append(row(1, 1))
    password = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert password not in str(raised.value), "no password in messages"
    assert target.problem is not None
    target.url = url  # the database is back (same object: the next call connects again)
    assert target.append(row(1, 1)) == 1
    assert target.problem is None


def test_a_row_that_is_not_valid_is_refused_and_nothing_written(url: str) -> None:
    target = store(url)
    bad = ProductionRow(
        embedding=np.full(N - 1, 1.0, dtype=np.float32),  # a column short
        target="1",
        prediction="1",
        model_version="v0001",
        request_id="short",
    )
    with pytest.raises(ValueError, match="fields"):
        target.append(bad)
    assert target.count_rows_on_disk() == 0


def test_rows_of_another_embedding_refuse_the_store(url: str) -> None:
    from ctloop.prod_db import PostgresProductionData

    store(url).append(row(1, 1))
    with pytest.raises(ProductionDataError, match="8 embedding columns"):
        PostgresProductionData(url, N + 1).repair()


def test_one_trainer_at_a_time_and_a_dead_holder_frees_the_lock(url: str, tmp_path: Path) -> None:
    from ctloop.prod_db import TrainerLock

    first, second = TrainerLock(url), TrainerLock(url)
    first.acquire(timeout=0)
    with pytest.raises(Timeout):
        second.acquire(timeout=0)
    first.release()
    second.acquire(timeout=0)
    second.release()

    # A holder killed with its connection open: PostgreSQL ends the session and the lock.
    holder = tmp_path / "holder.py"
    holder.write_text(
        "import sys, time\n"
        "from ctloop.prod_db import TrainerLock\n"
        "lock = TrainerLock(sys.argv[1])\n"
        "lock.acquire(timeout=0)\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen(
        [sys.executable, str(holder), url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        with pytest.raises(Timeout):
            TrainerLock(url).acquire(timeout=0)
        process.kill()
        process.wait(30)
        lock = TrainerLock(url)
        for _ in range(100):  # the server notices the closed connection at once, or nearly
            try:
                lock.acquire(timeout=0)
                break
            except Timeout:
                time.sleep(0.1)
        assert lock.is_locked
        lock.release()
    finally:
        process.kill()


def test_the_export_command_writes_the_file_from_either_store(url: str, built, tmp_path: Path):
    """`ctloop export prod-data` through the CLI, from PostgreSQL."""

    from ctloop.embed import load_embedding
    from harness.data import copy_workspace
    from harness.processes import child_environment

    settings = copy_workspace(built, tmp_path)
    n = int(load_embedding(settings.embedding_dir).info["n_components"])
    from ctloop.prod_db import PostgresProductionData

    database = PostgresProductionData(url, n)
    for index in range(5):
        database.append(
            ProductionRow(np.full(n, index, dtype=np.float32), "1", "1", "v0001", f"r{index}")
        )
    environment = child_environment(
        DATA_DIR=str(settings.data_dir),
        ARTIFACTS_DIR=str(settings.artifacts_dir),
        DATABASE_URL=url,
    )
    output = tmp_path / "exported.csv"
    done = subprocess.run(
        [sys.executable, "-m", "ctloop", "export", "prod-data", "--output", str(output)],
        env=environment,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = output.read_bytes().splitlines(keepends=True)
    assert lines[0] == format_row(prod_header(n)) and len(lines) == 6
    assert b"".join(lines) == b"".join(database.lines())
    assert url.split(":")[2].split("@")[0] not in done.stderr.decode(), "no password printed"
