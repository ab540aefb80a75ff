"""The workshop's three reasons to retrain, written once: enough new rows, drift, lower quality.

- rows: every RETRAIN_EVERY (k) production rows (`ctloop.schedule`);
- drift: the drift share of the latest MONITORING_WINDOW_ROWS production rows against the reference
  (the dashboard's test, `ctloop.drift`) reaches DRIFT_TRIGGER_SHARE;
- quality: the accuracy of the served predictions on the latest MONITORING_WINDOW_ROWS feedback rows
  falls below the served version's held-out accuracy minus QUALITY_TRIGGER_MARGIN.

Drift and quality are looked at every TRIGGER_CHECK_ROWS rows (and with every k trigger), and
each fires at most once per window: not again before MONITORING_WINDOW_ROWS more rows arrived.
A retrain records every reason that held when it started.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctloop.config import CoreSettings
from ctloop.drift import drift_share
from ctloop.evaluate import accuracy
from ctloop.retrain_log import RetrainLog
from ctloop.schedule import RetrainStatus
from ctloop.tables import PREDICTION, Table


@dataclass(frozen=True)
class TriggerCheck:
    """What the drift and quality triggers saw on the latest window of rows."""

    rows: int  # production rows when the check ran
    window_rows: int  # rows looked at (at most MONITORING_WINDOW_ROWS)
    drift_share: float | None
    served_accuracy: float | None  # of the predictions served on those rows
    quality_floor: float | None  # the served version's held-out accuracy - margin
    fired: tuple[str, ...] = ()

    def entry(self) -> dict:
        """The ledger line recording this check."""
        return {
            "event": "check",
            "rows": self.rows,
            "window_rows": self.window_rows,
            "drift_share": self.drift_share,
            "served_accuracy": self.served_accuracy,
            "quality_floor": self.quality_floor,
            "fired": list(self.fired),
        }


@dataclass(frozen=True)
class RetrainPlan:
    """One retrain to run: the rows it covers, why, and the older k triggers it covers too."""

    trigger_rows: int
    reasons: tuple[str, ...]  # "rows", "drift", "quality"
    superseded: tuple[int, ...] = ()
    check: TriggerCheck | None = None
    details: dict = field(default_factory=dict)


def check_due(settings: CoreSettings, ledger: RetrainLog, rows: int) -> bool:
    """Enough rows arrived since the last check to look at drift and quality again."""
    if rows < settings.min_rows:
        return False
    return rows - ledger.last_checked_rows() >= settings.trigger_check_rows


def check_window(
    settings: CoreSettings,
    ledger: RetrainLog,
    rows: int,
    window: Table,
    reference: np.ndarray,
    holdout_accuracy: float | None,
) -> TriggerCheck:
    """Drift and quality on the latest window (`window`: its rows, newest last)."""
    share = served = floor = None
    fired = []
    if len(window) >= settings.min_rows:
        share = round(
            drift_share(
                reference, window.embeddings, settings.drift_test, settings.drift_threshold
            ),
            6,
        )
        served = round(accuracy(window.targets, window.columns[PREDICTION]), 6)
        if share >= settings.drift_trigger_share and _may_fire(settings, ledger, "drift", rows):
            fired.append("drift")
        if holdout_accuracy is not None:
            floor = round(holdout_accuracy - settings.quality_trigger_margin, 6)
            if served < floor and _may_fire(settings, ledger, "quality", rows):
                fired.append("quality")
    return TriggerCheck(rows, len(window), share, served, floor, tuple(fired))


def plan_retrain(status: RetrainStatus, check: TriggerCheck | None) -> RetrainPlan | None:
    """What to retrain now: the newest k trigger due (older ones superseded), with any drift or
    quality reason that also holds; else a drift or quality trigger at the current row count."""
    fired = check.fired if check is not None else ()
    if status.due:
        *older, newest = status.due
        return RetrainPlan(newest, ("rows", *fired), tuple(older), check)
    if fired:
        return RetrainPlan(status.rows, fired, (), check)
    return None


def _may_fire(settings: CoreSettings, ledger: RetrainLog, reason: str, rows: int) -> bool:
    """At most once per window: the last retrain for this reason is a window behind."""
    return rows - ledger.last_trigger_for(reason) >= settings.window_rows
