"""Small general helpers: atomic and durable writes, append-only files, the clock, hashing.

Every module that owns a file on disk writes it through these, so "durable" means the same thing
everywhere: the bytes are fsynced, and a new name in a folder is made durable by fsyncing it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("ctloop.util")


# -- clock and hashing ---------------------------------------------------------------------------


def utc_now() -> datetime:
    """Now, in UTC, time-zone aware."""
    return datetime.now(timezone.utc)


def utc_iso(moment: datetime | None = None) -> str:
    """ISO 8601 in UTC with milliseconds and a Z: what every file and reply of the stack stores."""
    moment = moment or utc_now()
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- whole files ---------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_durable(temporary, data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_durable(path: Path, data: bytes) -> None:
    """Write a new file and fsync it (the caller makes its name durable with `fsync_dir`).
    OSError (a full disk, say) when any byte could not be written."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o664)
    try:
        write_all(descriptor, data, path)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_json(path: Path) -> dict:
    """A JSON object from a file; ValueError (with the path) when it is not one."""
    try:
        value = json.loads(path.read_bytes())
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}, not an object")
    return value


def json_bytes(value: dict) -> bytes:
    """Indented JSON with a final newline, for files people read."""
    return (json.dumps(value, indent=2) + "\n").encode()


# -- every byte or an error ---------------------------------------------------------------------

# What a write gets when there is no room: the disk or a quota is full, or the file reached the
# process's size limit (RLIMIT_FSIZE; Python ignores SIGXFSZ, so write() fails with EFBIG).
NO_ROOM = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def is_no_room(exc: BaseException) -> bool:
    """Whether an error is a full disk, quota or size limit (it goes away when room is made)."""
    return isinstance(exc, OSError) and exc.errno in NO_ROOM


def write_all(descriptor: int, data: bytes, name: object = "a file") -> None:
    """write() until every byte is written: a short write is followed by another write, which
    either finishes or says why it cannot (ENOSPC, EFBIG, EDQUOT, EIO) as an OSError."""
    view, written = memoryview(data), 0
    while written < len(data):
        count = os.write(descriptor, view[written:])
        if count <= 0:  # not seen on regular files; never loop on it
            raise OSError(errno.ENOSPC, f"no byte could be written to {name}")
        written += count


def append_whole(descriptor: int, data: bytes, size: int, name: object = "a file") -> None:
    """Append `data` to a file of `size` bytes (open with O_APPEND, under the caller's lock) and
    fsync it. All or nothing: on a short write or any error, the file is cut back to `size`, so
    no partial line stays behind, and the OSError is raised; the caller acknowledges nothing."""
    try:
        write_all(descriptor, data, name)
        os.fsync(descriptor)
    except OSError as exc:
        log.error("could not append %d bytes to %s: %s", len(data), name, exc.strerror or exc)
        with contextlib.suppress(OSError):  # cutting frees room; if it fails, the next append cuts
            os.ftruncate(descriptor, size)
            os.fsync(descriptor)
        raise


# -- append-only files ---------------------------------------------------------------------------


def cut_torn_tail(descriptor: int, size: int, name: object = "a file") -> int:
    """Cut a last line that has no newline (a write a crash interrupted, never acknowledged).

    `descriptor` is open for writing on the file, whose size is `size`, under the caller's lock;
    `name` is for the log line. Returns the new size.
    """
    if size == 0 or os.pread(descriptor, 1, size - 1) == b"\n":
        return size
    keep, end = 0, size
    while end > 0:  # back to the last newline, 64 KiB at a time
        start = max(end - 65536, 0)
        newline = os.pread(descriptor, end - start, start).rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    log.warning("cutting a torn last line (%d bytes, never acknowledged) of %s", size - keep, name)
    os.ftruncate(descriptor, keep)
    os.fsync(descriptor)
    return keep


def append_durable(path: Path, line: bytes) -> int:
    """Append one complete line (a torn last line is cut first), fsync; return the new size.

    One write() of the whole line on a file opened with O_APPEND: lines from several processes
    never interleave. The caller holds the file's lock when several writers may race. All or
    nothing (`append_whole`): OSError, and the file as it was, when the line cannot be written.
    """
    if not line.endswith(b"\n") or line.count(b"\n") != 1:
        raise ValueError("a line is exactly one newline-terminated line")
    created = not path.exists()
    descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o664)
    try:
        size = cut_torn_tail(descriptor, os.fstat(descriptor).st_size, path)
        append_whole(descriptor, line, size, path)
        size += len(line)
    finally:
        os.close(descriptor)
    if created:
        fsync_dir(path.parent)
    return size


def append_json_line(path: Path, value: dict) -> None:
    """One JSON object as one durable line of an append-only JSON-lines file."""
    append_durable(path, (json.dumps(value, separators=(",", ":")) + "\n").encode())


def read_json_lines(path: Path, start: int = 0) -> tuple[list[dict], int]:
    """The complete, valid JSON objects of a JSON-lines file from byte `start`, and where the
    complete lines end (pass it back as `start` to read only what was appended since).

    A last line without a newline (torn, never acknowledged) is not read; a complete line that is
    not a JSON object is logged and skipped, so one bad line never hides the others.
    """
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            data = handle.read()
    except FileNotFoundError:
        return [], 0
    entries, end = parse_json_lines(data, path)
    return entries, start + end


def parse_json_lines(data: bytes, name: object = "a file") -> tuple[list[dict], int]:
    """The complete, valid JSON objects in bytes read from a JSON-lines file, and the length of
    the complete lines (what follows the last newline is torn, or being written, and left out).
    A complete line that is not a JSON object is logged (with `name`) and skipped."""
    end = data.rfind(b"\n") + 1
    entries = []
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            value = None
        if isinstance(value, dict):
            entries.append(value)
        else:
            log.error("skipping an unreadable line of %s: %r", name, line[:120])
    return entries, end


def last_json_line(path: Path, window: int = 8192) -> dict | None:
    """The last complete JSON object of a JSON-lines file, read from its last `window` bytes
    (None when there is none there): a bounded read, whatever the file's length."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(size - window, 0))
            lines = handle.read().split(b"\n")
    except FileNotFoundError:
        return None
    for line in reversed(lines[:-1]):  # the part after the last newline is torn, or empty
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        return value if isinstance(value, dict) else None
    return None


# -- refused inputs ------------------------------------------------------------------------------


class InputError(ValueError):
    """Base class of every reason an input (a picture, a sound) is refused: `code` is a short
    machine-readable tag; `too_large` inputs are answered 413, the others 422."""

    code = "invalid_input"
    too_large = False
