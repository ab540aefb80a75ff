"""The reporting service in tests: settings under a temporary folder, its UI's JSON API."""

from __future__ import annotations

from pathlib import Path

from harness import loopback
from reporting.settings import ReportingSettings


def reporting_settings(data_dir: Path, **overrides) -> ReportingSettings:
    """Settings whose CSVs, workspace and HTML reports all live in `data_dir`."""
    values = {
        "data_dir": data_dir,
        "workspace": data_dir / "evidently",
        "reports_dir": data_dir / "reports",
        **overrides,
    }
    return ReportingSettings(**values)


def api(port: int, path: str) -> object:
    """GET a JSON document from the UI on loopback."""
    response = loopback.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    response.raise_for_status()
    return response.json()
