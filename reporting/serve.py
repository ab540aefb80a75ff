"""The container's entry point: `evidently ui` on :8082 and a refresher that follows production.

    python -m reporting.serve

1. create the workspace and the project if needed (before the UI loads the workspace);
2. start `evidently ui --workspace ... --host ... --port ...` as a child, telemetry off, with its
   secret (EVIDENTLY_SECRET, or the generated one): writes through its API need it, reads do not;
3. every REPORTING_REFRESH_SECONDS, add a snapshot if ref_data.csv or prod_data.csv changed;
4. serve the snapshot's figures to Prometheus on REPORTING_METRICS_PORT (reporting.exporter).

SIGTERM and SIGINT are forwarded to the UI, which is waited for; if the UI dies on its own, this
process exits non-zero so that the container is restarted. `/api/version` answers once the UI is up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from ctloop.credentials import resolve
from reporting.exporter import SnapshotCollector, serve_metrics
from reporting.logs import configure_logging, log
from reporting.project import prepare
from reporting.refresher import Refresher
from reporting.settings import ReportingSettings

UI_STOP_SECONDS = 10.0  # then the UI is killed
POLL_SECONDS = 1.0  # how soon a dead UI or a stop request is noticed


def ui_command(settings: ReportingSettings) -> list[str]:
    """`evidently ui` from this interpreter's environment, on the workspace."""
    return [
        sys.executable,
        "-m",
        "evidently.cli",
        "ui",
        "--workspace",
        str(settings.workspace_dir),
        "--host",
        settings.host,
        "--port",
        str(settings.port),
    ]


def start_ui(settings: ReportingSettings) -> subprocess.Popen:
    """Start the UI in its own session, so that only this process decides when it stops."""
    # Evidently's token security guards its write routes only: the dashboard stays readable.
    secret = resolve(settings.secret, settings.secrets_dir, "evidently_secret")
    environment = {**os.environ, "DO_NOT_TRACK": "1", "EVIDENTLY_SECRET": secret}
    process = subprocess.Popen(ui_command(settings), env=environment, start_new_session=True)
    log.info(
        "evidently ui started",
        extra={
            "ui_pid": process.pid,
            "url": f"http://{settings.host}:{settings.port}",
            "workspace": str(settings.workspace_dir),
        },
    )
    return process


class Service:
    """The UI child and the refresher loop, stopped by a signal or by the UI's death."""

    def __init__(self, settings: ReportingSettings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.ui: subprocess.Popen | None = None
        self.stop_signal: int | None = None

    def request_stop(self, signum: int, _frame: object = None) -> None:
        """Signal handler: forward the signal to the UI at once, end the loop (no logging here)."""
        self.stop_signal = signum
        self.stop.set()
        if self.ui is not None and self.ui.poll() is None:
            self.ui.send_signal(signum)

    def run(self) -> int:
        """Run until a stop request (0) or the UI's death (its exit code, or 1)."""
        project_id = prepare(self.settings)
        log.info("project ready", extra={"project_id": str(project_id)})
        collector = SnapshotCollector(self.settings.window_rows)
        server, _ = serve_metrics(collector, self.settings.host, self.settings.metrics_port)
        log.info(
            "prometheus exporter started",
            extra={"url": f"http://{self.settings.host}:{self.settings.metrics_port}/metrics"},
        )
        refresher = Refresher(self.settings, listener=collector)
        self.ui = start_ui(self.settings)
        try:
            next_check = time.monotonic()  # the first snapshot right away
            while not self.stop.is_set():
                code = self.ui.poll()
                if code is not None:
                    log.error("evidently ui exited; stopping", extra={"returncode": code})
                    return code or 1
                if time.monotonic() >= next_check:
                    refresher.tick()
                    next_check = time.monotonic() + self.settings.refresh_seconds
                self.stop.wait(min(POLL_SECONDS, max(0.0, next_check - time.monotonic())))
            name = signal.Signals(self.stop_signal).name if self.stop_signal else None
            log.info("stop requested", extra={"signal": name})
            return 0
        finally:
            server.shutdown()
            server.server_close()
            code = self._stop_ui()
            log.info("evidently ui stopped", extra={"returncode": code})

    def _stop_ui(self) -> int | None:
        """Wait for the UI to stop (asking it if no signal was forwarded), kill it if it hangs."""
        if self.ui is None:
            return None
        if self.ui.poll() is None and self.stop_signal is None:
            self.ui.terminate()
        try:
            return self.ui.wait(timeout=UI_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("evidently ui did not stop; killing it", extra={"ui_pid": self.ui.pid})
            self.ui.kill()
            return self.ui.wait()


def main() -> int:
    """Entry point: settings from the environment, SIGTERM and SIGINT wired to a clean stop."""
    configure_logging()
    try:
        service = Service(ReportingSettings())
        signal.signal(signal.SIGTERM, service.request_stop)
        signal.signal(signal.SIGINT, service.request_stop)
        return service.run()
    except Exception:  # bad settings, an unwritable workspace: say so in the log format, exit 1
        log.exception("reporting service failed")
        return 1


if __name__ == "__main__":
    sys.exit(main())
