"""One JSON object per log line, for every process of the stack (API workers and trainer)."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    """time, level, logger, pid, message, then the record's `fields` (log.info(..., extra=
    {"fields": {...}})): structured values go straight into the line, no string round trip."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
        }
        entry["message"] = record.getMessage()
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def fields(**values: object) -> dict:
    """`extra` for a structured log line: log.info("event", extra=fields(key=value))."""
    return {"fields": values}


def configure_json_logging(level: str = "INFO", stream=None) -> None:
    """Send every logger's records, as JSON lines, to `stream` (standard output by default)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
