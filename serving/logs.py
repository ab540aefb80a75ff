"""JSON logs for every serving process: the stack's format (ctloop.logs), uvicorn's own loggers
routed to it, and the request log written by the middleware instead of uvicorn's access log."""

from __future__ import annotations

import logging

from ctloop.logs import configure_json_logging

ACCESS_LOG = "serving.request"


def configure_logging(level: str) -> None:
    configure_json_logging(level)
    logging.getLogger(ACCESS_LOG).setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the middleware logs every request
