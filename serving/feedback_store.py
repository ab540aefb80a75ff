"""Durable, atomic appends to data/prod_data.csv, shared by every worker process.

One row is one write() of a whole line under an exclusive file lock (filelock), flushed and
fsynced before the caller is told it is saved. Rows get their number under the same lock, so
exactly one append reaches each multiple of k. The file is only ever appended to; a torn last line
(a machine crash in the middle of a write, never acknowledged) is cut off before the next append.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from filelock import FileLock

from ctloop.tables import format_row, prod_header
from ctloop.tables import fsync_dir as _fsync_dir

log = logging.getLogger("serving.feedback")


class FeedbackStore:
    """Appends rows to prod_data.csv and knows how many rows it holds."""

    def __init__(self, path: Path, n_components: int) -> None:
        self.path = path
        self.header = format_row(prod_header(n_components))
        self._file_lock = FileLock(str(path.with_name(path.name + ".lock")), timeout=30)
        self._thread_lock = threading.Lock()
        self._counted_bytes = 0  # how far this process has counted newlines
        self._counted_lines = 0
        self._inode: int | None = None

    def append(self, line: bytes) -> int:
        """Write one complete row durably; return its row number (1 = first data row)."""
        if not line.endswith(b"\n") or line.count(b"\n") != 1:
            raise ValueError("a row is exactly one line ending with a newline")
        with self._thread_lock, self._file_lock:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o664)
            try:
                size = self._prepare(descriptor)
                os.write(descriptor, line)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            self._counted_bytes = size + len(line)
            self._counted_lines += 1
            return self._counted_lines - 1

    def rows(self) -> int:
        """Complete data rows on disk now."""
        with self._thread_lock, self._file_lock:
            try:
                descriptor = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return 0
            try:
                self._follow(descriptor)
            finally:
                os.close(descriptor)
            return max(self._counted_lines - 1, 0)

    def repair(self) -> None:
        """Create the file with its header if missing; cut a torn last line (startup)."""
        with self._thread_lock, self._file_lock:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o664)
            try:
                self._prepare(descriptor)
            finally:
                os.close(descriptor)

    def _follow(self, descriptor: int) -> int:
        """Under the lock: bring the row count up to the file's size; return the size."""
        status = os.fstat(descriptor)
        if status.st_ino != self._inode:  # first use, or the file was replaced: count afresh
            self._inode, self._counted_bytes, self._counted_lines = status.st_ino, 0, 0
        self._count_to(status.st_size)
        return status.st_size

    def _prepare(self, descriptor: int) -> int:
        """Under the lock: header if empty, torn tail cut, count up to date; return the size."""
        status = os.fstat(descriptor)
        if status.st_ino != self._inode:  # first use, or the file was replaced: count afresh
            self._inode, self._counted_bytes, self._counted_lines = status.st_ino, 0, 0
        size = status.st_size
        if size == 0:
            os.write(descriptor, self.header)
            os.fsync(descriptor)
            _fsync_dir(self.path.parent)
            self._counted_bytes, self._counted_lines = len(self.header), 1
            return len(self.header)
        size = self._cut_torn_tail(descriptor, size)
        self._count_to(size)
        return size

    def _cut_torn_tail(self, descriptor: int, size: int) -> int:
        with self.path.open("rb") as handle:
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return size
            start = max(size - 65536, 0)
            handle.seek(start)
            tail = handle.read()
        keep = start + tail.rfind(b"\n") + 1
        log.warning(
            "cutting a torn last line of %s (%d bytes, never acknowledged)", self.path, size - keep
        )
        os.ftruncate(descriptor, keep)
        os.fsync(descriptor)
        self._counted_bytes = min(self._counted_bytes, keep)
        return keep

    def _count_to(self, size: int) -> None:
        """Count the newlines appended (by any process) since this process last looked."""
        if size < self._counted_bytes:
            self._counted_bytes, self._counted_lines = 0, 0
        if size == self._counted_bytes:
            return
        with self.path.open("rb") as handle:
            handle.seek(self._counted_bytes)
            remaining = size - self._counted_bytes
            while remaining > 0:
                chunk = handle.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                self._counted_lines += chunk.count(b"\n")
                remaining -= len(chunk)
        self._counted_bytes = size
