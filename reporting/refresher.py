"""Add a snapshot whenever ref_data.csv or prod_data.csv changed since the last update.

Bad or missing data never stops it: a failed update is logged, shown in the dashboard's status
panel, and tried again at the next check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from reporting.data import file_signature, production_signature
from reporting.logs import log
from reporting.project import UpdateResult, save_status, update
from reporting.settings import ReportingSettings

Signature = tuple[object, object]


class RefreshListener(Protocol):
    """Told the outcome of every check (the Prometheus exporter)."""

    def checked(self) -> None: ...  # nothing changed: the latest snapshot is up to date
    def updated(self, result: UpdateResult) -> None: ...
    def failed(self) -> None: ...


class Refresher:
    """Runs `update` when the CSVs' size, modification time or inode changed."""

    def __init__(
        self,
        settings: ReportingSettings,
        run_update: Callable[[ReportingSettings], UpdateResult] = update,
        listener: RefreshListener | None = None,
    ) -> None:
        self.settings = settings
        self._run_update = run_update
        self._listener = listener
        self._seen: Signature | None = None  # the files as the last successful update read them
        self._last_error: str | None = None

    def signature(self) -> Signature:
        """What identifies the current contents of both CSVs, without reading them."""
        return (
            file_signature(self.settings.ref_data_path),
            production_signature(self.settings),
        )

    def tick(self) -> UpdateResult | None:
        """One check: update if the data changed; never raises for bad data or a failed update."""
        # Taken before reading, so rows appended during the update trigger the next one.
        signature = self.signature()
        if signature == self._seen:
            if self._listener is not None:
                self._listener.checked()
            return None
        try:
            result = self._run_update(self.settings)
        except Exception as error:
            if self._listener is not None:
                self._listener.failed()
            self._report_failure(error)
            return None
        self._seen = signature
        self._last_error = None
        if self._listener is not None:
            self._listener.updated(result)
        log.info(
            "refreshed",
            extra={
                "outcome": result.outcome,
                "snapshot_id": str(result.snapshot_id) if result.snapshot_id else None,
                "html_report": str(result.html_report) if result.html_report else None,
                "seconds": round(result.seconds, 3),
                **result.values,
            },
        )
        return result

    def _report_failure(self, error: Exception) -> None:
        message = f"{type(error).__name__}: {error}"
        # The traceback once per distinct error, a short line on each retry.
        log.error(
            "refresh failed; will retry",
            exc_info=error if message != self._last_error else None,
            extra={"error": message, "retry_in_seconds": self.settings.refresh_seconds},
        )
        self._last_error = message
        try:
            save_status(
                self.settings,
                f"The last refresh failed: {message}. Earlier snapshots are unchanged; "
                f"it tries again every {self.settings.refresh_seconds:g} s.",
            )
        except Exception as status_error:  # the workspace itself may be what fails
            log.error(
                "could not show the failure on the dashboard", extra={"error": repr(status_error)}
            )
