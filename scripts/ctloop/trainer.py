"""The trainer process (`python -m ctloop retrain`): decides every retrain due, one at a time.

The serving API only appends rows and starts this process; everything else happens here:

- what is due is derived, not queued: the multiples of k reached by prod_data.csv that have no
  decision in artifacts/retrains.jsonl (`ctloop.schedule`), and a drift or quality trigger when
  the latest window shows one (`ctloop.triggers`). A crash, a restart or a burst of feedback
  cannot lose or duplicate one;
- one trainer at a time: the trainer lock below is the only mechanism. A trainer started while
  another holds it exits at once; the holder checks again before it leaves, so no trigger is left;
- when several triggers are due, one retrain covers the newest and the older ones are recorded as
  superseded, so the backlog cannot grow however fast feedback arrives;
- the retrain for trigger N trains on production rows up to N exactly: reproducible, in order;
- each trigger gets one decision (promoted, rejected, failed, superseded). An attempt is logged
  before training; a trigger whose trainer died MAX_ATTEMPTS times is recorded as failed.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable

from filelock import FileLock, Timeout

from ctloop.config import CoreSettings
from ctloop.prod_data import open_production
from ctloop.prod_db import TrainerLock
from ctloop.recovery import heal
from ctloop.registry import ModelRegistry, RegistryError
from ctloop.retrain_log import RetrainLog, open_ledger
from ctloop.schedule import RebuildYieldedError, RetrainStatus, retrain_status
from ctloop.stage import release, review_stage_safely
from ctloop.triggers import RetrainPlan, TriggerCheck, check_due, check_window, plan_retrain
from ctloop.util import utc_iso

log = logging.getLogger("ctloop.trainer")

MAX_ATTEMPTS = 3
# The pid of the server that started this trainer (`python -m serving` sets it for its workers,
# which pass it on): the trainer ends when that server ends, however it ends.
SERVER_PID = "CTLOOP_SERVER_PID"


def exit_with_server(poll_seconds: float = 1.0) -> None:
    """When started by a server (SERVER_PID set), end this process soon after the server ends:
    a trainer in its own session (so that a worker's restart does not kill it) would otherwise
    outlive a stopped stack. What it leaves is what a crash leaves, which the trainer recovers."""
    value = os.environ.get(SERVER_PID, "")
    if not value.isdigit():
        return
    pid = int(value)
    try:  # a pidfd sees the exit even before the server is reaped, and never a reused pid
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or the server is already gone
        handle = None
        if not _alive(pid):
            _server_gone(pid)

    def watch() -> None:
        if handle is not None:
            select.select([handle], [], [])
        else:
            while _alive(pid):
                time.sleep(poll_seconds)
        _server_gone(pid)

    threading.Thread(target=watch, name="server-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _server_gone(pid: int) -> None:
    log.warning("server_gone", extra={"event": "server_gone", "server_pid": pid})
    os._exit(1)


def trainer_lock(settings: CoreSettings) -> FileLock | TrainerLock:
    """The lock that makes a trainer the only one: per artifacts folder, or per database when
    the feedback rows are in PostgreSQL (DATABASE_URL)."""
    if settings.database_url:
        return TrainerLock(settings.database_url)
    return FileLock(str(settings.artifacts_dir / ".trainer.lock"))


def trainer_is_running(settings: CoreSettings) -> bool:
    """A trainer holds the lock now (a probe: the answer may change right after)."""
    lock = trainer_lock(settings)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def run_pending(settings: CoreSettings) -> list[dict]:
    """Decide every retrain due unless another trainer is doing it; return the decisions."""
    lock = trainer_lock(settings)
    ledger = open_ledger(settings)
    outcomes: list[dict] = []
    while True:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return outcomes  # the trainer holding the lock checks again before it leaves
        try:
            heal_safely(settings)  # retrains start from, and are gated against, a loadable champion
            review_stage_safely(settings)  # a stage judged before a newer challenger may replace it
            state = TrainerState(settings, ledger)
            while (plan := state.next_plan()) is not None:
                deferred = bool((ledger.last_decision() or {}).get("yielded"))
                outcomes += [supersede(ledger, row, plan.trigger_rows) for row in plan.superseded]
                outcomes.append(retrain(settings, ledger, plan, deferred))
        finally:
            lock.release()
        if not TrainerState(settings, ledger).work_due():  # landed before the release?
            return outcomes


def heal_safely(settings: CoreSettings) -> None:
    """Repair the pointer, or rebuild a first model, when the registry needs it (`ctloop.recovery`);
    a failure is logged, and the retrains are still tried."""
    try:
        done = heal(settings, ModelRegistry(settings.artifacts_dir))
    except Exception:  # the trainer must go on to the retrains due whatever this meets
        log.exception("the registry could not be repaired")
        return
    if done:
        log.warning("registry_healed", extra={"event": "registry_healed", "done": done})


class TrainerState:
    """What the trainer reads to decide what is due: rows, the ledger, the served version."""

    def __init__(self, settings: CoreSettings, ledger: RetrainLog) -> None:
        from ctloop.embed import load_embedding

        self.settings, self.ledger = settings, ledger
        n_components = int(load_embedding(settings.embedding_dir).info["n_components"])
        self.production = open_production(settings, n_components)

    def status(self) -> RetrainStatus:
        rows = self.production.count_rows_on_disk()
        return retrain_status(rows, self.settings.retrain_every, self.ledger.last_decided_trigger())

    def work_due(self) -> bool:
        status = self.status()
        return bool(status.due) or check_due(self.settings, self.ledger, status.rows)

    def next_plan(self) -> RetrainPlan | None:
        """The next retrain, looking at drift and quality first when a check is due."""
        status = self.status()
        check = None
        if status.due or check_due(self.settings, self.ledger, status.rows):
            check = self.check(status.rows)
            self.ledger.append(check.entry())
        return plan_retrain(status, check)

    def check(self, rows: int) -> TriggerCheck:
        from ctloop.reference import read_reference

        window = self.production.read_rows(max(rows - self.settings.window_rows + 1, 1), rows)
        reference = read_reference(self.settings.ref_data_path).embeddings
        return check_window(
            self.settings, self.ledger, rows, window, reference, self.served_holdout_accuracy()
        )

    def served_holdout_accuracy(self) -> float | None:
        registry = ModelRegistry(self.settings.artifacts_dir)
        try:
            version = registry.current_version()
            return registry.manifest(version)["metrics"]["holdout"]["accuracy"] if version else None
        except (RegistryError, KeyError, OSError, ValueError):
            return None


def supersede(ledger: RetrainLog, trigger_rows: int, by: int) -> dict:
    entry = {
        "trigger_rows": trigger_rows,
        "decision": "superseded",
        "reason": f"the retrain at {by} rows covers these rows too",
        "finished_at": utc_iso(),
    }
    ledger.append(entry)
    return entry


def retrain(
    settings: CoreSettings, ledger: RetrainLog, plan: RetrainPlan, deferred: bool = False
) -> dict:
    """Train a candidate on ref + prod rows up to the plan's trigger, gate it, log the decision
    (`deferred`: the last periodic rebuild gave way; this one fine-tunes)."""
    started = time.perf_counter()
    trigger_rows = plan.trigger_rows
    registry = ModelRegistry(settings.artifacts_dir)
    attempts = ledger.attempts(trigger_rows)
    entry = recover(settings, registry, trigger_rows)
    if entry is None and attempts >= MAX_ATTEMPTS:
        entry = {
            "trigger_rows": trigger_rows,
            "decision": "failed",
            "error": f"the trainer stopped {attempts} times before deciding this retrain",
        }
    if entry is None:
        ledger.append(
            {
                "trigger_rows": trigger_rows,
                "event": "attempt",
                "attempt": attempts + 1,
                "pid": os.getpid(),
                "started_at": utc_iso(),
            }
        )
        log.info(
            "retrain_start",
            extra={"event": "retrain_start", "trigger_rows": trigger_rows, "reasons": plan.reasons},
        )
        entry = train_and_log_entry(
            settings, registry, plan, ledger.finetunes_since_scratch(), deferred
        )
    entry = {
        **entry,
        "reasons": list(plan.reasons),
        "seconds": round(time.perf_counter() - started, 3),
        "finished_at": utc_iso(),
    }
    ledger.append(entry)
    log.info("retrain_done", extra={"event": "retrain_done", **entry})
    prune(settings, registry)
    return entry


def prune(settings: CoreSettings, registry: ModelRegistry) -> None:
    """Keep the registry's size bounded however many retrains run (a failure only logs)."""
    try:
        removed = registry.prune(settings.registry_keep_ancestors, settings.registry_keep_others)
    except (RegistryError, OSError) as exc:
        log.error("pruning the registry failed: %s", exc)
        return
    if removed:
        log.info("registry_pruned", extra={"event": "registry_pruned", "removed": removed})


def train_and_log_entry(
    settings: CoreSettings,
    registry: ModelRegistry,
    plan: RetrainPlan,
    finetunes: int = 0,
    deferred: bool = False,
) -> dict:
    """Train, gate and register the candidate for this plan; its decision line (`finetunes`:
    fine-tunes since the last full rebuild, for SCRATCH_EVERY). A periodic rebuild behind which
    a fine-tune's window of new rows piles up gives way: its trigger is superseded by the
    fine-tune that follows, so a burst is decided in seconds, not after minutes of rebuild."""
    from ctloop.candidate import train_candidate  # scikit-learn: only when there is work

    trigger_rows = plan.trigger_rows
    trigger = {
        "trigger_rows": trigger_rows,
        "retrain_every": settings.retrain_every,
        "reasons": list(plan.reasons),
    }
    if plan.check is not None:
        trigger["check"] = plan.check.entry()
    try:
        candidate = train_candidate(
            settings,
            registry,
            prod_rows=trigger_rows,
            trigger=trigger,
            finetunes_since_scratch=finetunes,
            behind=len(plan.superseded),
            deferred=deferred,
            checkpoint=rows_piling_up(settings, trigger_rows),
        )
    except RebuildYieldedError as exc:
        log.warning("rebuild_yielded", extra={"event": "rebuild_yielded", "reason": str(exc)})
        return {
            "trigger_rows": trigger_rows,
            "decision": "superseded",
            "reason": str(exc),
            "yielded": True,
        }
    except Exception as exc:  # a failed retrain is a decision too: logged, not retried forever
        log.exception("retrain for %d rows failed", trigger_rows)
        return {"trigger_rows": trigger_rows, "decision": "failed", "error": repr(exc)}
    return decision_entry(trigger_rows, candidate.version, candidate.gate, candidate.head.training)


def rows_piling_up(settings: CoreSettings, trigger_rows: int) -> Callable[[], None]:
    """A checkpoint for a periodic rebuild: it gives way once a newer trigger is due and a whole
    fine-tune window (FINETUNE_WINDOW_ROWS) of rows has arrived since its trigger."""
    from ctloop.embed import load_embedding

    n_components = int(load_embedding(settings.embedding_dir).info["n_components"])
    production = open_production(settings, n_components)
    limit = max(settings.retrain_every, settings.finetune_window_rows)

    def checkpoint() -> None:
        waiting = production.count_rows_on_disk() - trigger_rows
        if waiting >= limit:
            raise RebuildYieldedError(
                f"the periodic full rebuild gave way: {waiting} rows arrived while it ran "
                f"(at least {limit}); the next retrain fine-tunes, the rebuild follows once the "
                "trainer has caught up"
            )

    return checkpoint


def recover(settings: CoreSettings, registry: ModelRegistry, trigger_rows: int) -> dict | None:
    """A version registered for this trigger by a trainer that died before logging it: finish
    what it started (promote it if it passed and nothing moved since) and log its decision."""
    for manifest in reversed(registry.list_versions()):
        if (manifest.get("retrain") or {}).get("trigger_rows") != trigger_rows:
            continue
        gate = manifest["gate"]
        if gate["decision"] == "promoted" and registry.current_version() == manifest["parent"]:
            release(settings, registry, manifest["version"], f"retrain at {trigger_rows} rows")
        entry = decision_entry(trigger_rows, manifest["version"], gate, manifest.get("training"))
        return {**entry, "recovered": True}
    return None


def decision_entry(
    trigger_rows: int, version: str, gate: dict, training: dict | None = None
) -> dict:
    training = training or {}
    return {
        "trigger_rows": trigger_rows,
        "version": version,
        "mode": training.get("mode"),
        "base_version": training.get("base_version"),
        "training_rows": training.get("rows"),
        "train_seconds": training.get("seconds"),
        "decision": gate["decision"],
        "champion": gate["champion"],
        "champion_score": (gate["champion_score"] or {}).get("score"),
        "challenger_score": gate["challenger_score"]["score"],
        "reason": gate["reason"],
    }
