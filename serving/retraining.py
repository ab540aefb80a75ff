"""The serving side of the retrain loop: feedback rows, the retrain ledger, the schedule, and the
launcher that starts the trainer process (`python -m ctloop retrain`) when a retrain is due.

Retraining needs a CPU for seconds, so it runs outside the serving processes, at a lower
priority, in one thread. Each worker runs this launcher as a background task. It looks when a
feedback row reaches a multiple of k (`poke`) and every SERVING_TRAINER_CHECK_SECONDS anyway, so
that a trigger whose trainer died is picked up again without new traffic. It starts a trainer only
when one is due and the trainer lock is free, and waits for it to exit before it looks again: a
process start costs half a second of CPU, one per trigger would starve the API under load. That
a single trainer runs is guaranteed by the lock itself (`ctloop.trainer`), not by this launcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from ctloop.config import CoreSettings
from ctloop.prod_data import FeedbackStore
from ctloop.retrain_log import RetrainLog
from ctloop.schedule import RetrainStatus, retrain_status
from ctloop.trainer import SERVER_PID, trainer_is_running
from ctloop.triggers import check_due

log = logging.getLogger("serving.trainer")

SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class TrainerLauncher:
    def __init__(self, needs_trainer: Callable[[], bool], check_seconds: float) -> None:
        self.needs_trainer = needs_trainer  # blocking: run in a thread
        self.check_seconds = check_seconds
        self._poked = asyncio.Event()
        self.server_pid = int(os.environ.get(SERVER_PID, "") or os.getpid())
        self._task: asyncio.Task | None = None

    def poke(self) -> None:
        """A retrain may be due now: look at once."""
        self._poked.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            # Jittered, so that the workers' periodic looks do not fall on the same instant.
            timeout = self.check_seconds * random.uniform(0.8, 1.2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), timeout)
            self._poked.clear()
            try:
                if await run_in_threadpool(self.needs_trainer):
                    await self._run_trainer()
            except Exception:  # the launcher must survive anything and look again
                log.exception("trainer launcher error")

    async def _run_trainer(self) -> None:
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ctloop",
                "retrain",
                # It ends with the server (`python -m serving`, or this worker when uvicorn
                # runs it alone), not with a worker that restarts.
                env={**os.environ, **SINGLE_THREAD, SERVER_PID: str(self.server_pid)},
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


@dataclass
class Retraining:
    """What a worker knows of the feedback rows and the retrains, read from their owner modules."""

    settings: CoreSettings
    prod_data: FeedbackStore
    ledger: RetrainLog
    # The worker serves nothing, or not what the pointer names: the trainer repairs the registry
    # (`ctloop.recovery`) even with no retrain due.
    registry_damaged: Callable[[], bool] = lambda: False

    def status(self, rows: int | None = None) -> RetrainStatus:
        """The retrain schedule now (or right after the row numbered `rows` was appended)."""
        rows = self.prod_data.rows() if rows is None else rows
        return retrain_status(rows, self.settings.retrain_every, self.ledger.last_decided_trigger())

    def needs_trainer(self) -> bool:
        """A retrain is due (or drift and quality are to be looked at) and no trainer runs."""
        status = self.status()
        work = bool(status.due) or check_due(self.settings, self.ledger, status.rows)
        repair = self.registry_damaged() and self.settings.ref_data_path.exists()
        return (work or repair) and not trainer_is_running(self.settings)
