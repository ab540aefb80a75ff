"""prod_data.csv through its owner: appends from several processes, repairs, checks, tail reads."""

from __future__ import annotations

import csv
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from ctloop.prod_data import ProductionData, ProductionDataError, ProductionRow
from ctloop.tables import prod_header

N = 8


def row(worker: int, index: int, target: str | None = None) -> ProductionRow:
    return ProductionRow(
        embedding=np.full(N, worker + index / 1000, dtype=np.float32),
        target=target or str(worker),
        prediction=str(worker),
        model_version="v0001",
        request_id=f"{worker}-{index}",
        timestamp="2026-01-01T00:00:00.000Z",
    )


def append_many(path: str, worker: int, count: int, queue) -> None:
    store = ProductionData(Path(path), N)
    queue.put([store.append(row(worker, index)) for index in range(count)])


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
    assert len(rows) == 601 and all(len(r) == len(rows[0]) for r in rows)
    assert sorted(r[-2] for r in rows[1:]) == sorted(
        f"{w}-{i}" for w in range(4) for i in range(150)
    )
    assert ProductionData(path, N).rows() == 600


def test_a_missing_file_is_created_with_its_header(tmp_path: Path) -> None:
    store = ProductionData(tmp_path / "prod_data.csv", N)
    assert store.rows() == 0
    store.repair()
    assert (tmp_path / "prod_data.csv").read_bytes().decode().splitlines() == [
        ",".join(prod_header(N))
    ]
    assert store.append(row(1, 1)) == 1 and store.rows() == 1


def test_a_torn_last_line_is_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "prod_data.csv"
    store = ProductionData(path, N)
    store.append(row(1, 1))
    store.append(row(1, 2))
    with path.open("ab") as handle:  # a crash in the middle of a write
        handle.write(row(1, 3).to_line()[:25])
    other = ProductionData(path, N)  # a fresh process after the crash
    assert other.rows() == 2 and len(other.read_rows()) == 2
    assert other.append(row(1, 4)) == 3
    lines = path.read_bytes().splitlines()
    assert len(lines) == 4 and lines[-1] == row(1, 4).to_line().rstrip(b"\n")


def test_counts_follow_rows_appended_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "prod_data.csv"
    first, second = ProductionData(path, N), ProductionData(path, N)
    assert first.append(row(0, 0)) == 1
    assert second.append(row(0, 1)) == 2
    assert first.append(row(0, 2)) == 3
    assert second.rows() == 3


def test_a_row_must_be_one_whole_line(tmp_path: Path) -> None:
    store = ProductionData(tmp_path / "prod_data.csv", N)
    with pytest.raises(ValueError, match="one line"):
        store.append(row(1, 1, target="3\n4"))


def test_rows_are_read_by_number_from_the_end(tmp_path: Path) -> None:
    store = ProductionData(tmp_path / "prod_data.csv", N)
    for index in range(1, 26):
        store.append(row(index % 3, index))
    middle = store.read_rows(3, 5)
    assert middle.row_numbers.tolist() == [3, 4, 5]
    assert middle.columns["request_id"].tolist() == ["0-3", "1-4", "2-5"]
    assert store.tail(2).columns["request_id"].tolist() == ["0-24", "1-25"]
    assert store.read_rows(24, 99).row_numbers.tolist() == [24, 25]
    assert len(store.read_rows()) == 25 and store.read_rows(30, 40).row_numbers.tolist() == []


@pytest.mark.parametrize(
    ("damage", "where"),
    [
        (lambda data: data.split(b"\n", 1)[1], "line 1"),  # the header deleted
        (lambda data: data + b'1,2,3,4,5,6,7,"8,9\n', "line 4"),  # an unterminated quote
        (lambda data: data + b"1,2,3\n", "line 4"),  # too few fields
        (lambda data: data.replace(b"0.001000", b"zero", 1), "line 2"),  # not a number
    ],
    ids=["no header", "open quote", "short line", "not a number"],
)
def test_a_corrupt_file_refuses_appends_and_says_where(tmp_path: Path, damage, where) -> None:
    path = tmp_path / "prod_data.csv"
    store = ProductionData(path, N)
    store.append(row(0, 1))
    store.append(row(0, 2))
    path.write_bytes(damage(path.read_bytes()))
    size = path.stat().st_size

    for fresh in (store, ProductionData(path, N)):  # the running process, and a restart
        with pytest.raises(ProductionDataError, match=where):
            fresh.append(row(0, 3))
        assert fresh.problem is not None and str(path) in fresh.problem
    with pytest.raises(ProductionDataError, match=where):
        ProductionData(path, N).repair()
    assert path.stat().st_size == size, "nothing was written"


def test_a_repaired_file_takes_appends_again(tmp_path: Path) -> None:
    path = tmp_path / "prod_data.csv"
    store = ProductionData(path, N)
    store.append(row(0, 1))
    good = path.read_bytes()
    path.write_bytes(good + b"garbage\n")
    with pytest.raises(ProductionDataError):
        store.append(row(0, 2))
    path.write_bytes(good)  # the operator removes the bad line
    assert store.append(row(0, 2)) == 2 and store.problem is None


@pytest.mark.parametrize("blocked", ["prod_data.csv.lock", "prod_data.csv"])
def test_a_file_that_cannot_be_opened_refuses_appends(tmp_path: Path, blocked: str) -> None:
    """open() failing (a read-only folder, a full disk, a directory in the way) is a refusal
    with a reason, never a crash. The read-only data/ of a container: tests/e2e."""
    (tmp_path / blocked).mkdir()  # a directory where a file must be opened: open() fails
    store = ProductionData(tmp_path / "prod_data.csv", N)
    with pytest.raises(ProductionDataError, match="cannot be"):
        store.append(row(0, 1))
    assert store.problem is not None and "cannot be" in store.problem
