"""The stage of a challenger: put it there, judge it on live feedback, end it.

`release` is what happens to a candidate that passed the offline gate, by PROMOTION_STRATEGY:
promoted at once (`direct`, and always for the first model), or put on stage (`shadow`,
`canary`) beside the champion with the production row count it starts from. A challenger that
passes the gate while another is on stage takes the stage over (ctloop.pointer records the one
it replaces as rolled back, "superseded").

`review_stage` judges the stage on the feedback rows that arrived since it began, with the rules
of ctloop.delivery, and applies the decision through the registry (promote, roll back, or wait).
The trainer reviews it each time it runs and the serving workers after each feedback row; every
one of them may, since the registry applies a move only to the stage it was meant for.

Shadow scoring: the champion answered every feedback row; the challenger's answer to the same
image is its classifier on the row's stored embedding, which is the very input it received live
(every version of a line shares the embedding; a challenger with another embedding cannot be
scored and is rolled back, saying so).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ctloop.config import CoreSettings
from ctloop.delivery import LiveComparison, compare_live, decide_stage
from ctloop.embed import load_embedding
from ctloop.pointer import StageMovedError
from ctloop.predict import Classifier, load_model
from ctloop.prod_data import FeedbackStore, open_production
from ctloop.registry import CorruptPointerError, ModelRegistry
from ctloop.tables import Table

log = logging.getLogger("ctloop.stage")


def release(settings: CoreSettings, registry: ModelRegistry, version: str, reason: str) -> str:
    """Serve a version that passed the gate by the strategy; 'champion', 'shadow' or 'canary'."""
    strategy = settings.promotion_strategy
    try:
        champion = registry.current_version()
    except CorruptPointerError:  # promoting is how a broken pointer is repaired
        champion = None
    if strategy == "direct" or champion is None:
        registry.promote(version, reason=reason)
        return "champion"
    moves = registry.pointer.stages_of(version)
    if moves:  # a recovery after a crash: it was released already, perhaps judged since
        return moves[-1]["stage"]
    share = settings.canary_share if strategy == "canary" else settings.shadow_share
    percent = round(100 * share, 6)  # the pointer records the stage's share in percent
    rows = production_data(settings).count_rows_on_disk()
    registry.start_stage(version, strategy, percent, f"{reason}: {strategy} stage", rows)
    log.info(
        "stage_started",
        extra={"event": "stage_started", "version": version, "stage": strategy, "rows": rows},
    )
    return strategy


@dataclass(frozen=True)
class StageReview:
    """A stage judged on its live feedback: the comparison and what it leads to."""

    stage: dict
    comparison: LiveComparison
    decision: str  # "wait", "promote" or "roll back"
    reason: str
    min_rows: int
    applied: bool = False

    def to_dict(self) -> dict:
        return {
            **self.comparison.to_dict(),
            "min_rows": self.min_rows,
            "decision": self.decision,
            "reason": self.reason,
        }


def judge_stage(
    settings: CoreSettings,
    stage: dict,
    champion: str,
    rows: Table,
    challenger: Classifier | None,
) -> StageReview:
    """The decision for `stage` on `rows` (the feedback rows since it began). `challenger` is
    the shadow's classifier (None for a canary, or a shadow that cannot be scored)."""
    labels = None
    if stage["stage"] == "shadow" and challenger is not None and len(rows):
        labels = challenger(rows.embeddings)[0]
    comparison = compare_live(stage, champion, rows, labels)
    min_rows = settings.canary_min_rows if stage["stage"] == "canary" else settings.shadow_min_rows
    if stage["stage"] == "shadow" and challenger is None:
        return StageReview(
            stage, comparison, "roll back", "its embedding is not the one feedback rows are "
            "stored in: it cannot be scored live", min_rows,
        )  # fmt: skip
    decision, why = decide_stage(comparison, min_rows, settings.stage_margin)
    return StageReview(stage, comparison, decision, f"{stage['stage']}: {why}", min_rows)


def review_stage(
    settings: CoreSettings,
    registry: ModelRegistry | None = None,
    challenger: Classifier | None = None,
    apply: bool = True,
) -> StageReview | None:
    """Judge the challenger on stage (None when there is none) and, with `apply`, promote it or
    roll it back when the live comparison says so. `challenger`: its classifier, when the
    caller holds it already (a serving worker); otherwise it is loaded for a shadow."""
    registry = registry or ModelRegistry(settings.artifacts_dir)
    try:
        pointer = registry.current_pointer()
    except CorruptPointerError:
        return None
    stage = pointer.get("stage") if pointer is not None else None
    if pointer is None or stage is None:
        return None
    production = production_data(settings)
    if stage["stage"] == "shadow" and challenger is None:
        challenger = shadow_classifier(settings, registry, stage["version"])
    rows = production.read_rows(int(stage.get("from_rows", 0)) + 1)
    review = judge_stage(settings, stage, pointer["version"], rows, challenger)
    if not apply or review.decision == "wait":
        return review
    promote = review.decision == "promote"
    try:
        registry.end_stage(promote, f"live {review.reason}", version=stage["version"])
    except StageMovedError:  # another worker (or the trainer) moved it first
        return review
    log.info(
        "stage_ended",
        extra={"event": "stage_ended", "version": stage["version"], **review.to_dict()},
    )
    return StageReview(**{**review.__dict__, "applied": True})


def review_stage_safely(settings: CoreSettings) -> StageReview | None:
    """review_stage for callers that must go on whatever happens (the trainer): logs failures."""
    try:
        return review_stage(settings)
    except Exception:
        log.exception("reviewing the stage failed")
        return None


def shadow_classifier(
    settings: CoreSettings, registry: ModelRegistry, version: str
) -> Classifier | None:
    """The shadow's classifier, if it reads the embedding the feedback rows are stored in."""
    model = load_model(registry.load(version))
    stored = load_embedding(settings.embedding_dir).sha256
    return model.classifier if model.manifest["embedding"]["sha256"] == stored else None


def production_data(settings: CoreSettings) -> FeedbackStore:
    n_components = int(load_embedding(settings.embedding_dir).info["n_components"])
    return open_production(settings, n_components)


def agreement(champion_labels: np.ndarray, challenger_labels: np.ndarray) -> float | None:
    """Share of rows on which the two answered the same."""
    if not len(champion_labels):
        return None
    return float(np.mean(np.asarray(champion_labels) == np.asarray(challenger_labels)))
