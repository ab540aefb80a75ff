"""The stack's secrets: the user's own when set, otherwise generated once and kept in a file.

Nothing that writes is open to strangers out of the box, and nothing needs a step from the user:
the first start (`ctloop secrets`, run by Compose's init service; or the service itself when it
starts alone) writes each missing secret to SECRETS_DIR/<name> (`secrets/`, ignored by git),
readable by its owner and group only. The services read the same file, so the API and the page
share the API token without anyone copying it. A user's own value (API_TOKEN, EVIDENTLY_SECRET,
...) wins.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from ctloop.util import fsync_dir

NAMES = ("api_token", "evidently_secret", "grafana_admin_password", "mlflow_tracking_password")


def read_secret(directory: Path, name: str) -> str | None:
    """The secret's value, or None when its file does not exist (or is still empty)."""
    try:
        value = (Path(directory) / name).read_text().strip()
    except FileNotFoundError:
        return None
    return value or None


def ensure_secret(directory: Path, name: str) -> str:
    """The secret in `directory/name`, generated (32 random bytes, URL-safe) if missing.

    Several processes may start at once: the first creates the file (O_EXCL, mode 0640) and the
    others read what it wrote.
    """
    directory = Path(directory)
    found = read_secret(directory, name)
    if found is not None:
        return found
    directory.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:
        descriptor = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    except FileExistsError:
        return _wait_for(directory, name)
    try:
        os.write(descriptor, value.encode() + b"\n")
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    fsync_dir(directory)
    return value


def resolve(explicit: str | None, directory: Path, name: str) -> str:
    """The user's own value when set, else the stack's generated one."""
    if explicit and explicit.strip():
        return explicit.strip()
    return ensure_secret(directory, name)


def _wait_for(directory: Path, name: str, seconds: float = 5.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = read_secret(directory, name)
        if found is not None:
            return found
        time.sleep(0.05)
    raise RuntimeError(f"{directory / name} exists but stays empty")
