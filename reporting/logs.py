"""Logs as one JSON object per line on standard error, in the stack's format (ctloop.logs)."""

from __future__ import annotations

import logging
import sys

from ctloop.logs import configure_json_logging

log = logging.getLogger("reporting")


def configure_logging(level: int = logging.INFO) -> None:
    """Every logger's records to stderr as JSON lines (UTC times, `extra` values merged)."""
    configure_json_logging(logging.getLevelName(level), sys.stderr)
