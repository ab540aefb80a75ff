"""data/prod_data.csv, the feedback rows: the one module that creates, appends, counts, checks,
repairs and reads it (the serving workers append, the trainer and the dashboard read).

- One row is one write() of a whole line under an exclusive file lock (filelock), fsynced before
  the caller is told it is saved. Rows get their number under the same lock, so exactly one
  append reaches each row number, whichever worker makes it.
- All or nothing: a row that cannot be written whole (a full disk or quota, a file-size limit)
  is cut off again at once and refused (`NoRoomError`); its number is handed out by the next
  append that succeeds. Appends go on by themselves once there is room.
- The file is only ever appended to. A torn last line (a crash in the middle of a write, never
  acknowledged) is cut off before the next append.
- Before each append every line written since this process last looked is checked (other
  workers' rows, or a hand edit). A line that is not a valid row keeps its row number but is
  skipped by every reader, and recorded once in prod_data.skipped.jsonl (its line number, size,
  reason and first bytes) with one log line; appends go on after it. Only a damaged header
  (every column's meaning) refuses appends, with the reason.
- Reads take what they need from the end of the file (`read_rows`, `tail`), in bounded memory.
- With DATABASE_URL set, the rows live in PostgreSQL instead (ctloop.prod_db, same answers):
  `open_production` gives the configured store, and every reader and writer goes through it.
- A process starting on a long file does not check it all again: prod_data.checked.json says how
  far the file was checked (its inode, bytes, lines, skipped lines, and a digest of the bytes
  just before that point), written every CHECKPOINT_BYTES of checking. A process starts from it
  when it still describes the file (the same inode, at least that long, the same bytes before
  the point), otherwise from the first line; the file being append-only, what lies before the
  point was checked once already. API start to ready at a million rows: 11.2 s from the first line
  (docs/history.md).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Union

import numpy as np
from filelock import FileLock

# Re-exported: every caller imports a row and the errors from the owner of the file.
from ctloop.feedback import NoRoomError as NoRoomError
from ctloop.feedback import ProductionDataError as ProductionDataError
from ctloop.feedback import ProductionRow as ProductionRow
from ctloop.tables import (
    Table,
    check_line,
    empty_table,
    format_row,
    parse_table,
    prod_header,
)
from ctloop.util import (
    append_json_line,
    append_whole,
    cut_torn_tail,
    fsync_dir,
    is_no_room,
    last_json_line,
    utc_iso,
    write_atomic,
)

if TYPE_CHECKING:
    from ctloop.prod_db import PostgresProductionData

log = logging.getLogger("ctloop.prod_data")

CHUNK = 1 << 20
CHECKPOINT_BYTES = 8 << 20  # checked between two checkpoints (about 23,000 rows of 32 columns)
CHECKPOINT_TAIL = 4096  # bytes before a checkpoint's point that must be unchanged to resume
SKIPPED_TEXT_BYTES = 200  # of a skipped line, kept in the side file


class ProductionData:
    """prod_data.csv for an embedding of `n_components` columns."""

    def __init__(self, path: Path, n_components: int) -> None:
        self.path = Path(path)
        self.n_components = n_components
        self.header = prod_header(n_components)
        self.header_line = format_row(self.header)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._file_lock = FileLock(str(self.lock_path), timeout=30)
        self._thread_lock = threading.Lock()
        self._inode: int | None = None
        self._checked_bytes = 0  # how far this process has counted and checked the file
        self._lines = 0  # complete lines (header included) up to _checked_bytes
        self.skipped_path = self.path.with_name(f"{self.path.stem}.skipped.jsonl")
        self.checkpoint_path = self.path.with_name(f"{self.path.stem}.checked.json")
        self._checkpointed = 0  # bytes covered by the newest checkpoint read or written here
        self.skipped_lines = 0  # lines that are not valid rows, up to _checked_bytes
        self.problem: str | None = None  # why appends are refused, while they are

    # -- writing ---------------------------------------------------------------------------------

    def append(self, row: ProductionRow) -> int:
        """Write one row durably; return its row number (1 = the first data row)."""
        line = row.to_line()
        if line.count(b"\n") != 1:
            raise ValueError("a row must be exactly one line")
        with self._locked():
            descriptor = self._open_for_append()
            try:
                size = self._prepare(descriptor)
                try:
                    append_whole(descriptor, line, size, self.path)
                except OSError as exc:
                    raise self._write_fault(exc) from exc
            finally:
                os.close(descriptor)
            self._checked_bytes, self._lines = size + len(line), self._lines + 1
            return self._lines - 1

    def repair(self) -> None:
        """Create the file with its header if missing, cut a torn last line, check every line
        (at startup). Raises ProductionDataError, and keeps the reason in `problem`."""
        with self._locked():
            descriptor = self._open_for_append()
            try:
                self._prepare(descriptor)
            finally:
                os.close(descriptor)

    # -- reading ---------------------------------------------------------------------------------

    def rows(self) -> int:
        """Complete data rows on disk now (counted incrementally; lines are checked on the way)."""
        try:
            with self._locked():
                return self._count_and_check()
        except ProductionDataError:  # the lock cannot be taken (a read-only folder)
            return self.count_rows_on_disk()

    def read_rows(self, first: int = 1, last: int | None = None) -> Table:
        """Data rows `first`..`last` (1-based, inclusive; `last` defaults to the newest), read
        from the end of the file: memory and time grow with the rows asked for and those after."""
        first = max(first, 1)
        with self._reading() as descriptor:
            if descriptor is None:  # no file yet: no rows
                return empty_table(self.n_components, self.header[self.n_components :])
            end = _complete_size(descriptor, os.fstat(descriptor).st_size)
            total = max(self._lines_to(descriptor, end) - 1, 0) if end else 0
            last = total if last is None else min(last, total)
            if last < first:
                return empty_table(self.n_components, self.header[self.n_components :])
            start = _offset_of_last_lines(descriptor, end, total - first + 1)
            stop = _offset_of_last_lines(descriptor, end, total - last)
            header = self._read_header(descriptor)
            data = os.pread(descriptor, stop - start, start)
        return parse_table(
            data.splitlines(),
            self.path,
            self.n_components,
            header=header,
            first_row=first,
            skip_invalid=True,  # recorded by the writers' check (_check_to)
        )

    def tail(self, count: int) -> Table:
        """The newest `count` data rows (fewer when lines among them are not valid rows)."""
        total = self.count_rows_on_disk()
        return self.read_rows(max(total - count + 1, 1), total)

    def count_rows_on_disk(self) -> int:
        """Complete data rows, counted without this process's state (for processes that count
        once): from the checkpoint while it describes the file, from line 1 otherwise."""
        with self._reading() as descriptor:
            if descriptor is None:
                return 0
            end = _complete_size(descriptor, os.fstat(descriptor).st_size)
            return max(self._lines_to(descriptor, end) - 1, 0)

    def lines(self) -> Iterator[bytes]:
        """The header line, then every valid row's line in order (for the export)."""
        yield self.header_line
        with self._reading() as descriptor:
            if descriptor is None:
                return
            end = _complete_size(descriptor, os.fstat(descriptor).st_size)
            position, rest = 0, b""
            first = True
            while position < end:
                chunk = os.pread(descriptor, min(CHUNK, end - position), position)
                position += len(chunk)
                *complete, rest = (rest + chunk).split(b"\n")
                for line in complete:
                    if first:  # the header, written above
                        first = False
                        continue
                    try:
                        check_line(line, len(self.header), self.n_components)
                    except ValueError:  # skipped by every reader
                        continue
                    yield line + b"\n"

    def signature(self) -> tuple[int, int, int] | None:
        """What identifies the rows now, without reading them: size, mtime and inode."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (status.st_size, status.st_mtime_ns, status.st_ino)

    # -- internals -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[int | None]:
        """The file open for reading, or None while it does not exist."""
        try:
            descriptor = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            yield descriptor
        finally:
            os.close(descriptor)

    def _count_and_check(self) -> int:
        with self._reading() as descriptor:
            if descriptor is None:
                return 0
            status = os.fstat(descriptor)
            # Counted as far as a fault, if there is one: `problem` then says where it is.
            with contextlib.suppress(ProductionDataError):
                self._check_to(descriptor, _complete_size(descriptor, status.st_size), status)
        return max(self._lines - 1, 0)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's threads, then every process, one at a time."""
        with self._thread_lock:
            try:
                self._file_lock.acquire()
            except OSError as exc:  # the lock file cannot be created: a read-only folder
                raise self._fault(f"cannot be locked ({exc.strerror or exc})") from exc
            try:
                yield
            finally:
                self._file_lock.release()

    def _open_for_append(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o664)
        except OSError as exc:
            raise self._fault(f"cannot be opened for writing ({exc.strerror})") from exc

    def _prepare(self, descriptor: int) -> int:
        """Under the locks: header if empty, torn tail cut, every new line checked; the size."""
        status = os.fstat(descriptor)
        size = status.st_size
        try:
            if size == 0:
                append_whole(descriptor, self.header_line, 0, self.path)
                fsync_dir(self.path.parent)
                self._inode, self._checked_bytes, self._lines = status.st_ino, 0, 0
                self.skipped_lines = 0
                size = len(self.header_line)
            else:
                size = cut_torn_tail(descriptor, size, self.path)
        except OSError as exc:
            raise self._write_fault(exc) from exc
        self._check_to(descriptor, size, status)
        self.problem = None
        return size

    def _check_to(self, descriptor: int, size: int, status: os.stat_result) -> None:
        """Count and check the complete lines between where this process stopped and `size`;
        a line that is not a valid row is recorded (once) and counted in `skipped_lines`."""
        if status.st_ino != self._inode or size < self._checked_bytes:
            self._inode, self._checked_bytes, self._lines = status.st_ino, 0, 0
            self.skipped_lines = self._checkpointed = 0
            self._resume(descriptor, size)
        if 0 < size < len(self.header_line):
            raise self._fault("line 1 is not the header (the file is shorter than it)", line=1)
        if size and os.pread(descriptor, len(self.header_line), 0) != self.header_line:
            raise self._fault(
                "line 1 is not the header "
                f"{','.join(self.header[:2])},...,{','.join(self.header[-2:])}",
                line=1,
            )
        position = self._checked_bytes
        while position < size:
            data = os.pread(descriptor, min(CHUNK, size - position), position)
            end = data.rfind(b"\n") + 1
            if end == 0:  # a line longer than a chunk: no valid row is this long
                length = _line_length(descriptor, position, size)
                self._skip(data[:SKIPPED_TEXT_BYTES], length, "a line is longer than 1 MiB")
                position += length
                self._checked_bytes = position
                continue
            for line in data[:end].splitlines(keepends=True):
                if self._lines == 0:  # the header, checked above
                    self._lines += 1
                else:
                    try:
                        check_line(line, len(self.header), self.n_components)
                        self._lines += 1
                    except ValueError as exc:
                        self._skip(line[:SKIPPED_TEXT_BYTES], len(line), str(exc))
                position += len(line)
                self._checked_bytes = position
        if self._checked_bytes - self._checkpointed >= CHECKPOINT_BYTES:
            self._save_checkpoint(descriptor)

    def _resume(self, descriptor: int, size: int) -> None:
        """Start from the checkpoint when it describes this file (see the module's docstring)."""
        point = self._checkpoint(descriptor, self._inode, size)
        if point is not None:
            self._checked_bytes, self._lines = point["bytes"], point["lines"]
            self.skipped_lines, self._checkpointed = point["skipped_lines"], point["bytes"]

    def _checkpoint(self, descriptor: int, inode: int | None, size: int) -> dict | None:
        """prod_data.checked.json when it describes this file up to `size`, else None."""
        try:
            point = json.loads(self.checkpoint_path.read_bytes())
            checked = point["bytes"]
            if (
                point["inode"] == inode
                and isinstance(checked, int)
                and len(self.header_line) <= checked <= size
                and isinstance(point["lines"], int)
                and isinstance(point["skipped_lines"], int)
                and point["tail_sha256"] == self._tail_digest(descriptor, checked)
            ):
                return point
        except (OSError, ValueError, KeyError, TypeError):  # none, torn by hand, another format
            pass
        return None

    def _lines_to(self, descriptor: int, end: int) -> int:
        """Complete lines up to `end` (the header included): those the checkpoint counted, and
        those after it, or every line when there is no usable checkpoint."""
        point = self._checkpoint(descriptor, os.fstat(descriptor).st_ino, end)
        if point is None:
            return _count_lines(descriptor, end)
        return point["lines"] + _count_lines(descriptor, end, point["bytes"])

    def _save_checkpoint(self, descriptor: int) -> None:
        point = {
            "inode": self._inode,
            "bytes": self._checked_bytes,
            "lines": self._lines,
            "skipped_lines": self.skipped_lines,
            "tail_sha256": self._tail_digest(descriptor, self._checked_bytes),
            "written_at": utc_iso(),
        }
        try:
            write_atomic(self.checkpoint_path, (json.dumps(point) + "\n").encode())
        except OSError as exc:  # no room, a read-only folder: the next start checks more
            log.warning("could not write %s: %s", self.checkpoint_path, exc)
            return
        self._checkpointed = self._checked_bytes

    @staticmethod
    def _tail_digest(descriptor: int, end: int) -> str:
        start = max(end - CHECKPOINT_TAIL, 0)
        return hashlib.sha256(os.pread(descriptor, end - start, start)).hexdigest()

    def _skip(self, text: bytes, length: int, reason: str) -> None:
        """A complete line that is not a valid row: it keeps its row number, every reader skips
        it, and it is recorded in the side file once, whichever process finds it first."""
        self._lines += 1
        self.skipped_lines += 1
        if self._already_recorded(self._lines):
            return
        entry = {
            "line": self._lines,  # in the file, the header being line 1
            "row": self._lines - 1,
            "bytes": length,
            "reason": reason,
            "text": text.decode("utf-8", errors="backslashreplace"),
            "file_inode": self._inode,
            "seen_at": utc_iso(),
        }
        log.error(
            "prod_data.csv line %d is not a valid row (%s): skipped by every reader, recorded in "
            "%s",
            self._lines,
            reason,
            self.skipped_path,
            extra={"event": "prod_data_line_skipped", "line": self._lines},
        )
        try:
            append_json_line(self.skipped_path, entry)
        except OSError as exc:  # no room: logged above; recorded when a check runs again
            log.error("could not record the skipped line in %s: %s", self.skipped_path, exc)

    def _already_recorded(self, line: int) -> bool:
        """Whether the side file's newest entry is this line or a later one of the same file
        (lines are checked in order, so it is recorded when that is so)."""
        last = last_json_line(self.skipped_path)
        return (
            last is not None
            and last.get("file_inode") == self._inode
            and isinstance(last.get("line"), int)
            and last["line"] >= line
        )

    def _read_header(self, descriptor: int) -> list[str]:
        first = os.pread(descriptor, 65536, 0).split(b"\n", 1)[0]
        return next(csv.reader([first.decode("utf-8", errors="replace")]))

    def _write_fault(self, exc: OSError) -> ProductionDataError:
        """A write that failed: no room (507, goes away when room is made) or another error."""
        if is_no_room(exc):
            self._fault(f"no room to write a row ({exc.strerror or exc}); nothing was kept")
            return NoRoomError(self.problem)
        return self._fault(f"cannot be written ({exc.strerror or exc})")

    def _fault(self, reason: str, line: int | None = None) -> ProductionDataError:
        where = f"{self.path}, line {line}" if line is not None else str(self.path)
        self.problem = f"{where}: {reason}"
        log.error("prod_data.csv refuses appends: %s", self.problem)
        return ProductionDataError(self.problem)


class StoreSettings(Protocol):
    """What names the feedback store: the file, or a PostgreSQL URL that replaces it."""

    @property
    def prod_data_path(self) -> Path: ...

    @property
    def database_url(self) -> str | None: ...


FeedbackStore = Union[ProductionData, "PostgresProductionData"]


def open_production(settings: StoreSettings, n_components: int) -> FeedbackStore:
    """The configured feedback store: PostgreSQL when DATABASE_URL is set, the file otherwise."""
    if settings.database_url:
        return _postgres_store(settings.database_url, n_components)
    return ProductionData(settings.prod_data_path, n_components)


@functools.lru_cache(maxsize=8)
def _postgres_store(url: str, n_components: int) -> PostgresProductionData:
    """One store, so one connection, per process and database: the refresher and the trainer's
    checks open it again and again."""
    from ctloop.prod_db import PostgresProductionData

    return PostgresProductionData(url, n_components)


def _complete_size(descriptor: int, size: int) -> int:
    """The size up to the end of the last complete line (a torn line being written is left out)."""
    position = size
    while position > 0:
        start = max(position - CHUNK, 0)
        newline = os.pread(descriptor, position - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def _line_length(descriptor: int, start: int, end: int) -> int:
    """The length of the line that begins at `start`, its newline included (`end` is just after
    a newline)."""
    position = start
    while position < end:
        chunk = os.pread(descriptor, min(CHUNK, end - position), position)
        newline = chunk.find(b"\n")
        if newline >= 0:
            return position + newline + 1 - start
        position += len(chunk)
    return end - start


def _count_lines(descriptor: int, end: int, start: int = 0) -> int:
    """Newlines between `start` and `end`."""
    count, position = 0, start
    while position < end:
        chunk = os.pread(descriptor, min(CHUNK, end - position), position)
        if not chunk:
            break
        count += chunk.count(b"\n")
        position += len(chunk)
    return count


def _offset_of_last_lines(descriptor: int, end: int, lines: int) -> int:
    """Where the last `lines` lines before `end` begin (0 if there are fewer); `end` is just
    after a newline (or 0)."""
    if lines <= 0 or end == 0:
        return end
    wanted, seen, position = lines + 1, 0, end  # the newline at end - 1 closes the last line
    while position > 0:
        start = max(position - CHUNK, 0)
        chunk = np.frombuffer(os.pread(descriptor, position - start, start), dtype=np.uint8)
        newlines = np.flatnonzero(chunk == 10)
        if seen + len(newlines) >= wanted:
            return start + int(newlines[len(newlines) - (wanted - seen)]) + 1
        seen += len(newlines)
        position = start
    return 0
