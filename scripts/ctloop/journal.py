"""Append-only JSON-lines files kept bounded by rotation: what artifacts/retrains.jsonl
(`ctloop.retrain_log`) and artifacts/history.jsonl (`ctloop.pointer`) share.

The owner module says what its answers need from the lines so far; this one keeps the file small
enough that every read of it is bounded, whatever the history:

- Every append takes the file's lock. When the file has reached `rotate_bytes`, the append first
  rotates it: the owner's `carry()`, called under the lock so that no line slips in between, gives
  one `{"event": "carry", "at": ..., ...}` line holding everything its answers need from the lines
  so far; the file is hard-linked to an archive beside it (`<stem>.<UTC time><suffix>`, e.g.
  `retrains.20261207T163100123456Z.jsonl`; copied where hard links are not supported), a new file
  holding the carry line alone replaces it atomically (`write_atomic`: temporary file, fsync,
  rename, fsync of the folder), and archives past the newest `keep_archives` are deleted. Then
  the line is appended. So the file stays under `rotate_bytes` plus one line (a rotation that
  would not halve it, the carry being that large, is skipped with a warning); the archives are
  for people, no answer needs them.
- A rotation that cannot be done (no room, say) is logged and leaves the file as it was, without
  an archive: the line is appended all the same, and the append raises as it always did when the
  line cannot be written.
- A crash at any step leaves a readable file with the same answers: before the rename, the old
  file (and an archive that is a second name of it, pruned with the others later, or a temporary
  file, which the next rotation removes); after it, the new one (and an archive too many, pruned
  by the next rotation).
- A reader (`read_new`) keeps its place by inode and offset (and the file's first bytes, in case
  an inode is reused) and starts again from the first line when the file was replaced: that line
  is the carry, so a reader never opens an archive.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from filelock import BaseFileLock

from ctloop.util import (
    append_json_line,
    fsync_dir,
    parse_json_lines,
    utc_iso,
    utc_now,
    write_atomic,
    write_durable,
)

log = logging.getLogger("ctloop.journal")

CARRY = "carry"  # the "event" of a carry line
HEAD_BYTES = 64  # a file's first bytes, which tell it from a later file on a reused inode
NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def since_carry(entries: list[dict]) -> tuple[dict | None, list[dict]]:
    """The last carry line among `entries` (None when there is none) and the entries after it."""
    for index in range(len(entries) - 1, -1, -1):
        if entries[index].get("event") == CARRY:
            return entries[index], entries[index + 1 :]
    return None, entries


class Journal:
    """One append-only JSON-lines file, its lock, its rotation and a reader's place in it."""

    def __init__(
        self, path: Path, lock: BaseFileLock, rotate_bytes: int, keep_archives: int
    ) -> None:
        self.path = Path(path)
        self.lock = lock
        self.rotate_bytes = rotate_bytes
        self.keep_archives = keep_archives
        stem, suffix = re.escape(self.path.stem), re.escape(self.path.suffix)
        self._archive = re.compile(rf"^{stem}\.\d{{8}}T\d{{12}}Z{suffix}$")
        self._inode: int | None = None
        self._offset = 0
        self._head = b""

    # -- reading ---------------------------------------------------------------------------------

    def read_all(self) -> list[dict]:
        """Every complete line of the file as it is now, oldest first (a carry line, if it was
        ever rotated, and what followed it: a bounded read)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return parse_json_lines(data, self.path)[0]

    def read_new(self) -> tuple[list[dict], bool]:
        """The complete lines appended since the last call, and whether the caller must start
        again from them: true on the first call, and when the file was replaced (rotated) or
        removed meanwhile, the lines then being the whole file from its first."""
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            self._inode, self._offset, self._head = None, 0, b""
            return [], True
        with handle:  # one open file: its inode, its first bytes and its lines agree
            status = os.fstat(handle.fileno())
            head = handle.read(HEAD_BYTES)
            same = (
                status.st_ino == self._inode
                and status.st_size >= self._offset
                and head.startswith(self._head)
            )
            start = self._offset if same else 0
            handle.seek(start)
            data = handle.read()
        entries, end = parse_json_lines(data, self.path)
        self._inode, self._offset, self._head = status.st_ino, start + end, head
        return entries, not same

    def archives(self) -> list[Path]:
        """The archives beside the file, oldest first."""
        names = [path for path in self.path.parent.iterdir() if self._archive.match(path.name)]
        return sorted(names, key=lambda path: path.name)

    # -- writing ---------------------------------------------------------------------------------

    def append(self, entry: dict, carry: Callable[[], dict]) -> None:
        """Append one line durably, rotating the file first when it has reached `rotate_bytes`
        (`carry` is called then, under the lock). OSError when the line cannot be written."""
        with self.lock:
            try:
                size = os.stat(self.path).st_size
            except FileNotFoundError:
                size = 0
            if size >= self.rotate_bytes:
                self._rotate(carry, size)
            append_json_line(self.path, entry)

    def _rotate(self, carry: Callable[[], dict], size: int) -> None:
        """Replace the file by its carry line, keeping it as an archive; on any OSError, log it
        and leave the file in place (the append goes on)."""
        try:
            state = {"event": CARRY, "at": utc_iso(), **carry()}
            line = (json.dumps(state, separators=(",", ":")) + "\n").encode()
            if 2 * len(line) > size:
                log.warning(
                    "not rotating %s: what its answers carry (%d bytes) is half its size or more",
                    self.path,
                    len(line),
                )
                return
            self._remove_temporaries()
            before = os.stat(self.path).st_ino
            archive = self._archive_file()
            try:
                write_atomic(self.path, line)
            except OSError:
                with contextlib.suppress(OSError):
                    if os.stat(self.path).st_ino == before:  # not replaced: no archive of it
                        archive.unlink()
                raise
        except OSError as exc:
            log.error("could not rotate %s, it grows on meanwhile: %s", self.path, exc)
            return
        log.info("rotated %s: %d bytes kept as %s", self.path, size, archive.name)
        self._remove_old_archives()

    def _archive_file(self) -> Path:
        """A second name for the file, durable (a copy where hard links are not supported)."""
        stamp = utc_now().strftime("%Y%m%dT%H%M%S%fZ")
        archive = self.path.with_name(f"{self.path.stem}.{stamp}{self.path.suffix}")
        try:
            os.link(self.path, archive)
        except OSError as exc:
            if exc.errno not in NO_HARD_LINKS:
                raise
            write_durable(archive, self.path.read_bytes())
        fsync_dir(self.path.parent)
        return archive

    def _remove_temporaries(self) -> None:
        """New files a crashed rotation left (`write_atomic`'s): no rotation runs but ours."""
        for path in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.tmp"):
            with contextlib.suppress(OSError):
                path.unlink()

    def _remove_old_archives(self) -> None:
        archives = self.archives()
        for path in archives[: max(len(archives) - self.keep_archives, 0)]:
            try:
                path.unlink()
            except OSError as exc:
                log.error("could not remove the old archive %s: %s", path, exc)
