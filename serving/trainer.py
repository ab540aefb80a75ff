"""Starts the retrain process (`python -m ctloop retrain`) without waiting for it.

Retraining needs a CPU for seconds, so it runs outside the serving processes, at a lower
priority, in a single thread. A trainer is started on every k-th row and at startup; a trainer
started while another runs exits at once, and the running one looks for new rows before it
stops, so no retrain is lost and none runs twice (see ctloop.retrain).
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
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Start a trainer process; its exit is awaited in the background (no zombies)."""
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
        task = asyncio.create_task(self._reap(process))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reap(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if code != 0:
            log.error("retrain process exited with %d", code)

    async def wait(self) -> None:
        """Wait for the trainers this worker started (tests, graceful shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
