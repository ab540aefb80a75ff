"""prod_data.csv through its owner: appends from several processes, repairs, checks, tail reads."""

from __future__ import annotations

import csv
import json
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


def test_a_damaged_header_refuses_appends_and_says_where(tmp_path: Path) -> None:
    """Without its header no column of the file has a meaning: appends are refused, with why."""
    path = tmp_path / "prod_data.csv"
    store = ProductionData(path, N)
    store.append(row(0, 1))
    store.append(row(0, 2))
    path.write_bytes(path.read_bytes().split(b"\n", 1)[1])
    size = path.stat().st_size

    for fresh in (store, ProductionData(path, N)):  # the running process, and a restart
        with pytest.raises(ProductionDataError, match="line 1"):
            fresh.append(row(0, 3))
        assert fresh.problem is not None and str(path) in fresh.problem
    with pytest.raises(ProductionDataError, match="line 1"):
        ProductionData(path, N).repair()
    assert path.stat().st_size == size, "nothing was written"


def test_a_header_put_back_takes_appends_again(tmp_path: Path) -> None:
    path = tmp_path / "prod_data.csv"
    store = ProductionData(path, N)
    store.append(row(0, 1))
    good = path.read_bytes()
    path.write_bytes(b"garbage\n")
    with pytest.raises(ProductionDataError):
        store.append(row(0, 2))
    path.write_bytes(good)  # the operator puts the file back
    assert store.append(row(0, 2)) == 2 and store.problem is None


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (b'1,2,3,4,5,6,7,"8,9\n', "not a CSV line"),  # an unterminated quote
        (b"1,2,3\n", "3 fields"),  # too few fields
        (b"zero" + b",1" * (N + 5) + b"\n", "is not a number"),
        (b"\xff\xfe" * 10 + b"\n", "not a CSV line"),  # not UTF-8
        (b"x" * (3 << 20) + b"\n", "longer than 1 MiB"),
    ],
    ids=["open quote", "short line", "not a number", "not utf-8", "3 MiB line"],
)
def test_a_corrupt_line_is_skipped_by_every_reader_recorded_once_and_appends_go_on(
    tmp_path: Path, damage: bytes, reason: str
) -> None:
    path = tmp_path / "prod_data.csv"
    store, other = ProductionData(path, N), ProductionData(path, N)  # two workers
    store.append(row(0, 1))
    store.append(row(0, 2))
    with path.open("ab") as handle:  # a hand edit, a disk error: row 3 is not a row
        handle.write(damage)

    assert store.append(row(0, 4)) == 4, "the bad line keeps its number; appends go on"
    assert other.append(row(0, 5)) == 5
    assert store.problem is None and other.problem is None
    assert store.skipped_lines == other.skipped_lines == 1
    for reader in (store, ProductionData(path, N)):
        table = reader.read_rows()
        assert table.row_numbers.tolist() == [1, 2, 4, 5]
        assert table.columns["request_id"].tolist() == ["0-1", "0-2", "0-4", "0-5"]
        assert reader.tail(3).row_numbers.tolist() == [4, 5]  # rows 3..5, 3 left out

    recorded = [json.loads(line) for line in store.skipped_path.read_bytes().splitlines()]
    assert len(recorded) == 1, "recorded once, whichever process found it first"
    assert recorded[0]["line"] == 4 and recorded[0]["row"] == 3
    assert recorded[0]["bytes"] == len(damage) and reason in recorded[0]["reason"]
    assert len(recorded[0]["text"]) <= 4 * 200

    ProductionData(path, N).repair()  # a restart checks the file again: still recorded once
    assert len(store.skipped_path.read_bytes().splitlines()) == 1


def test_row_numbers_are_never_handed_out_twice_when_rows_do_not_fit(tmp_path: Path) -> None:
    """A real file-size limit (RLIMIT_FSIZE, in a child process) with room for a few rows: each
    refused row is cut off whole, the next append that fits takes the next free number."""
    path = tmp_path / "prod_data.csv"
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=append_past_a_size_limit, args=(str(path), queue))
    child.start()
    outcome = queue.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0, outcome

    accepted, refused, resumed = outcome["accepted"], outcome["refused"], outcome["resumed"]
    assert refused and all("no room" in problem for problem in refused), refused
    assert outcome["size_when_full"] <= outcome["limit"]
    assert outcome["ends_with_newline"], "no part of a refused row stays on disk"
    numbers = [number for number, _ in accepted + resumed]
    assert numbers == list(range(1, len(numbers) + 1)), "every number once, in order"
    assert outcome["problem_after"] is None
    with path.open(newline="") as handle:
        lines = list(csv.reader(handle))
    assert [line[-2] for line in lines[1:]] == [ident for _, ident in accepted + resumed]


def append_past_a_size_limit(path: str, queue) -> None:
    from ctloop.prod_data import NoRoomError
    from harness.storage import lift_file_size_limit, limit_file_size

    store = ProductionData(Path(path), N)
    accepted = [(store.append(row(0, index)), f"0-{index}") for index in range(3)]
    limit = Path(path).stat().st_size + 1000  # room for 3 rows and part of a fourth
    limit_file_size(limit)
    refused = []
    for index in range(3, 12):
        try:
            accepted.append((store.append(row(0, index)), f"0-{index}"))
        except NoRoomError as exc:
            refused.append(str(exc))
    size, ends = Path(path).stat().st_size, Path(path).read_bytes().endswith(b"\n")
    lift_file_size_limit()  # room again: appends resume by themselves
    resumed = [(store.append(row(1, index)), f"1-{index}") for index in range(2)]
    queue.put(
        {
            "accepted": accepted,
            "refused": refused,
            "resumed": resumed,
            "limit": limit,
            "size_when_full": size,
            "ends_with_newline": ends,
            "problem_after": store.problem,
        }
    )


def test_concurrent_writers_on_a_full_filesystem_lose_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    """Four processes append to prod_data.csv on a real 512 KB tmpfs filled to its last block,
    then again once room is made: every acknowledged row is on disk at the number it was given,
    nothing refused is, no line is torn, and appends resume by themselves."""
    from harness.storage import fill, small_filesystem

    with small_filesystem(tmp_path / "small") as folder:
        path = folder / "prod_data.csv"
        ProductionData(path, N).repair()  # the header
        filler = fill(folder)
        acknowledged, refused = run_writers(path, phase=0)
        assert refused, "the filesystem was full: some rows must be refused"
        filler.unlink()  # room again
        again, refused_again = run_writers(path, phase=1)
        assert not refused_again and len(again) == 4 * 20
        with path.open(newline="") as handle:
            lines = list(csv.reader(handle))
        data = path.read_bytes()
    assert data.endswith(b"\n") and lines[0] == prod_header(N)
    assert all(len(line) == len(lines[0]) for line in lines)
    by_number = {index: line[-2] for index, line in enumerate(lines[1:], start=1)}
    acknowledged += again
    assert len({number for number, _ in acknowledged}) == len(acknowledged), "numbers unique"
    assert {number: ident for number, ident in acknowledged} == by_number, (
        "every acknowledged row at its number, and nothing else in the file"
    )


def run_writers(path: Path, phase: int) -> tuple[list[tuple[int, str]], list[str]]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    writers = [
        context.Process(target=append_until_done, args=(str(path), phase * 10 + w, 20, queue))
        for w in range(4)
    ]
    for process in writers:
        process.start()
    results = [queue.get(timeout=120) for _ in writers]
    for process in writers:
        process.join(timeout=60)
        assert process.exitcode == 0
    return [pair for done, _ in results for pair in done], [r for _, no in results for r in no]


def append_until_done(path: str, worker: int, count: int, queue) -> None:
    from ctloop.prod_data import NoRoomError

    store = ProductionData(Path(path), N)
    done, refused = [], []
    for index in range(count):
        try:
            done.append((store.append(row(worker, index)), f"{worker}-{index}"))
        except NoRoomError as exc:
            refused.append(str(exc))
    queue.put((done, refused))


@pytest.mark.parametrize("blocked", ["prod_data.csv.lock", "prod_data.csv"])
def test_a_file_that_cannot_be_opened_refuses_appends(tmp_path: Path, blocked: str) -> None:
    """open() failing (a read-only folder, a full disk, a directory in the way) is a refusal
    with a reason, never a crash. The read-only data/ of a container: tests/e2e."""
    (tmp_path / blocked).mkdir()  # a directory where a file must be opened: open() fails
    store = ProductionData(tmp_path / "prod_data.csv", N)
    with pytest.raises(ProductionDataError, match="cannot be"):
        store.append(row(0, 1))
    assert store.problem is not None and "cannot be" in store.problem


def long_file(path: Path, rows: int) -> None:
    """A file of `rows` rows written at once (as bench.history does), a bad line among them."""
    store = ProductionData(path, N)
    lines = [row(1, index).to_line() for index in range(1, rows + 1)]
    lines[rows // 2] = b"not,a,row\n"
    path.write_bytes(store.header_line + b"".join(lines))


def checked_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bytes each os.pread of the module asks for, from now on."""
    import ctloop.prod_data as module

    asked: list[int] = []
    real = module.os.pread

    def counting(descriptor: int, length: int, offset: int) -> bytes:
        asked.append(length)
        return real(descriptor, length, offset)

    monkeypatch.setattr(module.os, "pread", counting)
    return asked


def test_a_new_process_resumes_the_check_and_the_count_where_the_last_one_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ctloop.prod_data.CHECKPOINT_BYTES", 4096)
    monkeypatch.setattr("ctloop.prod_data.CHUNK", 4096)  # reads from the end: a chunk at a time
    path = tmp_path / "prod_data.csv"
    long_file(path, 20_000)  # 2.3 MB
    first = ProductionData(path, N)
    first.repair()  # checks every line, and says how far
    assert first.rows() == 20_000 and first.skipped_lines == 1
    assert first.checkpoint_path.exists()

    asked = checked_bytes(monkeypatch)
    again = ProductionData(path, N)
    again.repair()  # a restart
    assert ProductionData(path, N).count_rows_on_disk() == 20_000  # a trainer counting once
    assert ProductionData(path, N).read_rows(19_999).row_numbers.tolist() == [19_999, 20_000]
    assert sum(asked) < path.stat().st_size / 10, "resumed near the end, not from line 1"
    assert (again.rows(), again.skipped_lines) == (20_000, 1)
    assert again.append(row(2, 1)) == 20_001 == first.append(row(2, 2)) - 1
    assert len(first.skipped_path.read_bytes().splitlines()) == 1  # recorded once


@pytest.mark.parametrize("change", ["replaced", "cut", "rewritten"])
def test_a_checkpoint_that_no_longer_describes_the_file_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    monkeypatch.setattr("ctloop.prod_data.CHECKPOINT_BYTES", 4096)
    path = tmp_path / "prod_data.csv"
    long_file(path, 2000)
    ProductionData(path, N).repair()
    data = path.read_bytes()
    point = json.loads((tmp_path / "prod_data.checked.json").read_text())
    if change == "replaced":  # moved aside and written again: another inode, other rows
        path.unlink()
        long_file(path, 1500)
        expected = 1500
    elif change == "cut":  # shorter than the checkpoint's point
        lines = data.splitlines(keepends=True)[:1001]
        path.write_bytes(b"".join(lines))
        expected = 1000
    else:  # the same length, the bytes before the point changed in place
        end = point["bytes"]
        before = data[:end].splitlines(keepends=True)
        before[-2] = b"x" * (len(before[-2]) - 1) + b"\n"
        path.write_bytes(b"".join(before) + data[end:])
        expected = 2000
    assert ProductionData(path, N).count_rows_on_disk() == expected
    store = ProductionData(path, N)
    store.repair()
    assert store.rows() == expected
    bad = {"replaced": 1, "cut": 0, "rewritten": 2}  # the bad line at the middle: cut away
    assert store.skipped_lines == bad[change]
