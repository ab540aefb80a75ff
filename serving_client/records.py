"""The records that GET /model and GET /model/versions report as the stack keeps them: a version's
metrics, training and gate (its manifest), its stage moves (the pointer's history), the last
retrain decision (the retrain ledger), the stage on and its live comparison, a worker's fallback.

Each is a TypedDict: the JSON keeps exactly the keys the record has (a key a record does not have
is left out, not sent as null), and a key added later passes through (`extra="allow"`). A required
key (Required, or any key of a TypedDict without total=False) is in every record of its kind;
older records may lack the others. Keys are declared in the order their writers write them, which
is the order the JSON gives them in.
"""

from __future__ import annotations

from pydantic import ConfigDict, JsonValue, with_config
from typing_extensions import Required, TypedDict

# Records written by other versions of the stack may hold more keys: they pass through.
OPEN = ConfigDict(extra="allow")


@with_config(OPEN)
class HoldoutMetrics(TypedDict, total=False):
    """Metrics on held-out rows, rounded to 6 digits (only `rows`, 0, when none were held out)."""

    rows: int
    accuracy: float
    macro_f1: float
    macro_precision: float
    macro_recall: float
    balanced_accuracy: float
    per_class_recall: dict[str, float]


@with_config(OPEN)
class VersionMetrics(TypedDict, total=False):
    """Held-out metrics of a version: on all held-out rows, the reference's and production's."""

    holdout: HoldoutMetrics
    holdout_reference: HoldoutMetrics
    holdout_production: HoldoutMetrics


@with_config(OPEN)
class TrainingRecord(TypedDict, total=False):
    """How a version was trained: its rows, head, augmentation, mode and time."""

    rows: int
    reference_rows: int
    production_rows: int
    augmented_rows: int
    holdout_rows: int
    production_rows_read: int
    production_weight: float | None
    data_sha256: str
    estimator: str
    head: dict[str, JsonValue]
    warm_start: bool
    augmentation: dict[str, JsonValue] | None
    augment_seconds: float
    fit_seconds: float
    mode: str
    mode_reason: str
    base_version: str | None
    production_read: list[int] | None
    production_through: int
    window: list[int] | None
    window_rows: int
    replay_production_rows: int
    replay_reference_rows: int
    seconds: float


@with_config(OPEN)
class GateScore(TypedDict, total=False):
    """A model's score on the gate's held-out rows."""

    reference_accuracy: float | None
    production_accuracy: float | None
    score: float
    reference_class_recall: dict[str, float]


@with_config(OPEN)
class GateRows(TypedDict, total=False):
    """The held-out rows the gate scored on."""

    reference: int
    production: int


@with_config(OPEN)
class GateRecord(TypedDict, total=False):
    """The champion/challenger gate of a version: both scores, the floors and the decision."""

    rule: str
    policy: str
    tolerance: float
    class_tolerance: float
    reference_tolerance: float
    rows: GateRows
    champion: str | None
    champion_score: GateScore | None
    challenger_score: GateScore
    class_floor: dict[str, float]
    reference_floor: float | None
    decision: str
    reason: str


@with_config(OPEN)
class StageMove(TypedDict):
    """One move of a version: champion, shadow, canary, retired or rolled_back."""

    stage: str
    since: str | None
    reason: str | None


@with_config(OPEN)
class RetrainDecision(TypedDict, total=False):
    """A retrain decision of the ledger: promoted, rejected, failed or superseded."""

    trigger_rows: Required[int]
    version: str
    mode: str | None
    base_version: str | None
    training_rows: int | None
    train_seconds: float | None
    decision: Required[str]
    champion: str | None
    champion_score: float | None
    challenger_score: float
    reason: str
    error: str
    yielded: bool
    recovered: bool
    reasons: list[str]
    seconds: float
    finished_at: str


@with_config(OPEN)
class Fallback(TypedDict):
    """Why a worker serves another version than the registry pointer names."""

    wanted: str | None
    serving: str | None
    reason: str


@with_config(OPEN)
class Stage(TypedDict, total=False):
    """The challenger on stage beside the champion."""

    version: Required[str]
    stage: Required[str]
    percent: Required[float]
    since: str
    reason: str
    from_rows: int


@with_config(OPEN)
class LiveReview(TypedDict):
    """The stage judged on the feedback rows since it began, and what that leads to."""

    stage: str
    challenger: str
    champion: str
    challenger_rows: int
    champion_rows: int
    challenger_accuracy: float | None
    champion_accuracy: float | None
    min_rows: int
    decision: str
    reason: str


@with_config(OPEN)
class Delivery(TypedDict, total=False):
    """How a challenger reaches clients now: the strategy, the stage, the split of requests by
    version in percent (a shadow's share of requests it also answers), the live comparison."""

    strategy: Required[str]
    stage: Required[Stage | None]
    split: dict[str, float]
    shadowed_percent: float
    live: LiveReview | None


class FieldError(TypedDict):
    """One invalid field of a 422: where (`loc`, the body's keys and indexes), what, its type."""

    loc: list[str | int]
    msg: str
    type: str
