"""`python -m serving`: the production launcher.

Starts uvicorn with WORKERS processes (uvloop, httptools, no access log: the middleware logs
each request as JSON), after giving prometheus_client a fresh multiprocess folder so that /metrics
adds up every worker.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import uvicorn

from ctloop.trainer import SERVER_PID
from serving.protocol import TimedHttpToolsProtocol
from serving.settings import ServingSettings


def main() -> None:
    settings = ServingSettings()
    metrics_dir = Path(
        os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="ctloop-metrics-")
    )
    shutil.rmtree(metrics_dir, ignore_errors=True)  # counters start at zero with the service
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    os.environ[SERVER_PID] = str(os.getpid())  # the trainers end when this process ends
    uvicorn.run(
        "serving.api:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http=TimedHttpToolsProtocol,  # httptools, with header and body timeouts
        access_log=False,
        # A client's address is its connection's. uvicorn trusts X-Forwarded-For from 127.0.0.1
        # by default: any process on the host could then pick an address per request and escape
        # the feedback rate limit (serving.ratelimit).
        proxy_headers=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
