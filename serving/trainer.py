"""Starts the retrain process (`python -m ctloop retrain`) without waiting for it.

Retraining needs a CPU for seconds, so it runs outside the serving processes, at a lower
priority, in a single thread. Each worker runs at most one trainer at a time: a trigger that
arrives while its trainer runs is remembered, and one more trainer starts when it exits (a
process start costs half a second of CPU; at hundreds of feedbacks per second, one per trigger
would starve the API). Trainers of different workers serialise on a file lock, and each looks for
new rows before it stops, so no retrain is lost and none runs twice (see ctloop.retrain).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

log = logging.getLogger("serving.trainer")

SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class TrainerLauncher:
    def __init__(self) -> None:
        self._running: asyncio.Task | None = None
        self._again = False

    async def start(self) -> None:
        """Start a trainer now, or right after the one this worker is running exits."""
        if self._running is not None and not self._running.done():
            self._again = True
            return
        self._running = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "ctloop",
                    "retrain",
                    env={**os.environ, **SINGLE_THREAD},
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    start_new_session=True,  # a worker's restart must not kill a retrain
                )
            except OSError:
                log.exception("could not start the retrain process")
                return
            code = await process.wait()  # reaped: no zombies
            if code != 0:
                log.error("retrain process exited with %d", code)
            if not self._again:
                return
