"""data/prod_data.csv, the feedback rows: the one module that creates, appends, counts, checks,
repairs and reads it (the serving workers append, the trainer and the dashboard read).

- One row is one write() of a whole line under an exclusive file lock (filelock), fsynced before
  the caller is told it is saved. Rows get their number under the same lock, so exactly one
  append reaches each row number, whichever worker makes it.
- The file is only ever appended to. A torn last line (a crash in the middle of a write, never
  acknowledged) is cut off before the next append.
- Before each append the header and every line written since this process last looked are
  checked (other workers' rows, or a hand edit); a corrupt file refuses appends with the line at
  fault, so that no acknowledged row can ever land after a line that breaks CSV readers.
- Reads take what they need from the end of the file (`read_rows`, `tail`), in bounded memory.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock

from ctloop.tables import (
    Table,
    TableError,
    check_line,
    embedding_row,
    empty_table,
    format_row,
    parse_table,
    prod_header,
)
from ctloop.util import cut_torn_tail, fsync_dir, utc_iso

log = logging.getLogger("ctloop.prod_data")

CHUNK = 1 << 20


class ProductionDataError(TableError):
    """prod_data.csv cannot take appends: it is corrupt or cannot be written."""


@dataclass(frozen=True)
class ProductionRow:
    """One feedback row: the image's embedding, its true class and the served answer."""

    embedding: np.ndarray
    target: str
    prediction: str
    model_version: str
    request_id: str
    client_prediction: str = ""
    timestamp: str = field(default_factory=utc_iso)

    def to_line(self) -> bytes:
        return embedding_row(
            self.embedding,
            [
                self.target,
                self.prediction,
                self.model_version,
                self.timestamp,
                self.request_id,
                self.client_prediction,
            ],
        )


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
                os.write(descriptor, line)
                os.fsync(descriptor)
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
        with self._reading() as descriptor:
            end = _complete_size(descriptor, os.fstat(descriptor).st_size) if descriptor else 0
            total = max(_count_lines(descriptor, end) - 1, 0) if end else 0
            last = total if last is None else min(last, total)
            first = max(first, 1)
            if last < first:
                return empty_table(self.n_components, self.header[self.n_components :])
            start = _offset_of_last_lines(descriptor, end, total - first + 1)
            stop = _offset_of_last_lines(descriptor, end, total - last)
            header = self._read_header(descriptor)
            data = os.pread(descriptor, stop - start, start)
        return parse_table(
            data.splitlines(), self.path, self.n_components, header=header, first_row=first
        )

    def tail(self, count: int) -> Table:
        """The newest `count` data rows."""
        total = self.count_rows_on_disk()
        return self.read_rows(max(total - count + 1, 1), total)

    def count_rows_on_disk(self) -> int:
        """Complete data rows, counted from scratch (for processes that count once)."""
        with self._reading() as descriptor:
            if descriptor is None:
                return 0
            end = _complete_size(descriptor, os.fstat(descriptor).st_size)
            return max(_count_lines(descriptor, end) - 1, 0)

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
                os.write(descriptor, self.header_line)
                os.fsync(descriptor)
                fsync_dir(self.path.parent)
                self._inode, self._checked_bytes, self._lines = status.st_ino, 0, 0
                size = len(self.header_line)
            else:
                size = cut_torn_tail(descriptor, size, self.path)
        except OSError as exc:
            raise self._fault(f"cannot be written ({exc.strerror})") from exc
        self._check_to(descriptor, size, status)
        self.problem = None
        return size

    def _check_to(self, descriptor: int, size: int, status: os.stat_result) -> None:
        """Count and check the complete lines between where this process stopped and `size`."""
        if status.st_ino != self._inode or size < self._checked_bytes:
            self._inode, self._checked_bytes, self._lines = status.st_ino, 0, 0
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
                raise self._fault("a line is longer than 1 MiB", line=self._lines + 1)
            for line in data[:end].splitlines(keepends=True):
                if self._lines > 0:
                    try:
                        check_line(line, len(self.header), self.n_components)
                    except ValueError as exc:
                        raise self._fault(str(exc), line=self._lines + 1) from None
                self._lines += 1
                position += len(line)
                self._checked_bytes = position

    def _read_header(self, descriptor: int) -> list[str]:
        first = os.pread(descriptor, 65536, 0).split(b"\n", 1)[0]
        return next(csv.reader([first.decode("utf-8", errors="replace")]))

    def _fault(self, reason: str, line: int | None = None) -> ProductionDataError:
        where = f"{self.path}, line {line}" if line is not None else str(self.path)
        self.problem = f"{where}: {reason}"
        log.error("prod_data.csv refuses appends: %s", self.problem)
        return ProductionDataError(self.problem)


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


def _count_lines(descriptor: int, end: int) -> int:
    count, position = 0, 0
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
