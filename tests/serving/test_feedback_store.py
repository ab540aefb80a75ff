"""prod_data.csv appends from several processes: none lost, none torn, numbers unique."""

from __future__ import annotations

import csv
import multiprocessing
from pathlib import Path

import numpy as np

from ctloop.tables import prod_header, prod_row_bytes
from serving.feedback_store import FeedbackStore

N = 8


def line(worker: int, index: int) -> bytes:
    vector = np.full(N, worker + index / 1000, dtype=np.float32)
    return prod_row_bytes(
        vector, str(worker), str(worker), "v0001", "2026-01-01T00:00:00Z", f"{worker}-{index}"
    )


def append_many(path: str, worker: int, count: int, queue) -> None:
    store = FeedbackStore(Path(path), N)
    queue.put([store.append(line(worker, index)) for index in range(count)])


def test_concurrent_processes_lose_nothing_and_number_rows_uniquely(tmp_path: Path) -> None:
    path = tmp_path / "prod_data.csv"
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=append_many, args=(str(path), w, 150, queue)) for w in range(4)
    ]
    for process in workers:
        process.start()
    numbers = sorted(n for _ in workers for n in queue.get(timeout=120))
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert numbers == list(range(1, 601)), "each append gets its own row number, 1..600"
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == prod_header(N)
    assert len(rows) == 601 and all(len(row) == len(rows[0]) for row in rows)
    assert sorted(row[-2] for row in rows[1:]) == sorted(
        f"{w}-{i}" for w in range(4) for i in range(150)
    )
    assert FeedbackStore(path, N).rows() == 600


def test_a_missing_file_is_created_with_its_header(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "prod_data.csv", N)
    assert store.rows() == 0
    store.repair()
    assert (tmp_path / "prod_data.csv").read_bytes().decode().splitlines() == [
        ",".join(prod_header(N))
    ]
    assert store.append(line(1, 1)) == 1 and store.rows() == 1


def test_a_torn_last_line_is_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "prod_data.csv"
    store = FeedbackStore(path, N)
    store.append(line(1, 1))
    store.append(line(1, 2))
    with path.open("ab") as handle:  # a crash in the middle of a write
        handle.write(line(1, 3)[:25])
    other = FeedbackStore(path, N)  # a fresh process after the crash
    assert other.rows() == 2
    assert other.append(line(1, 4)) == 3
    lines = path.read_bytes().splitlines()
    assert len(lines) == 4 and lines[-1] == line(1, 4).rstrip(b"\n")


def test_counts_follow_rows_appended_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "prod_data.csv"
    first, second = FeedbackStore(path, N), FeedbackStore(path, N)
    assert first.append(line(0, 0)) == 1
    assert second.append(line(0, 1)) == 2
    assert first.append(line(0, 2)) == 3
    assert second.rows() == 3


def test_a_row_must_be_one_whole_line(tmp_path: Path) -> None:
    import pytest

    store = FeedbackStore(tmp_path / "prod_data.csv", N)
    with pytest.raises(ValueError, match="one line"):
        store.append(b"1,2,3")
    with pytest.raises(ValueError, match="one line"):
        store.append(b"1,2\n3,4\n")
