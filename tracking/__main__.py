"""`python -m tracking`: the mirror, every MLFLOW_MIRROR_POLL_SECONDS (`python -m tracking sync`:
one pass and exit, which also rebuilds a lost MLflow from artifacts/; `python -m tracking alive`:
exit 0 if the mirror's loop turned in the last minute, the container's health check).

An MLflow that does not answer is logged and tried again at the next pass: the stack goes on
without it, and catches up when it returns.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from ctloop.config import CoreSettings
from ctloop.logs import configure_json_logging
from tracking.server import admin_password
from tracking.settings import TrackingSettings

log = logging.getLogger("tracking")
HEARTBEAT = Path(tempfile.gettempdir()) / "ctloop-mirror.alive"
ALIVE_SECONDS = 60.0


def client_environment(settings: TrackingSettings) -> None:
    """MLflow's client reads its credentials from the environment; a pass must fail fast when the
    server is away (its default retries for minutes) and try again at the next."""
    os.environ["MLFLOW_TRACKING_USERNAME"] = settings.username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = settings.password or admin_password(settings)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["run", "sync", "alive"], default="run")
    args = parser.parse_args()
    if args.command == "alive":
        try:
            age = time.time() - HEARTBEAT.stat().st_mtime
        except FileNotFoundError:
            sys.exit("the mirror's loop has not turned yet")
        sys.exit(0 if age < ALIVE_SECONDS else f"the mirror's loop last turned {age:.0f} s ago")
    from tracking.mirror import Mirror  # MLflow's client: seconds to import, not for `alive`

    configure_json_logging()
    settings = TrackingSettings()
    client_environment(settings)
    mirror = Mirror(CoreSettings(), settings)
    if args.command == "sync":
        for line in mirror.sync():
            print(line)
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        try:
            done = mirror.sync()
        except Exception as exc:  # MLflow away, or a version mid-write: the next pass retries
            log.warning("mirror pass failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        else:
            if done:
                log.info("mirrored", extra={"changes": done})
        HEARTBEAT.touch()
        stop.wait(settings.poll_seconds)


if __name__ == "__main__":
    main()
