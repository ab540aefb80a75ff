"""ctloop.stage: a challenger released by the strategy, judged on live feedback rows, its stage
ended through the registry, every move in history.jsonl; and what the registry does around a
stage (pruning, fallbacks, moves meant for a stage that has moved on)."""

from __future__ import annotations

import numpy as np
import pytest

from ctloop.config import CoreSettings
from ctloop.predict import load_model
from ctloop.prod_data import ProductionData, ProductionRow
from ctloop.registry import ModelRegistry, StageMovedError
from ctloop.stage import release, review_stage
from harness.data import embedding_size, served_feedback
from harness.delivery import flipped, register_challenger


def with_strategy(settings: CoreSettings, **values) -> CoreSettings:
    return settings.model_copy(update=values)


def feedback(settings: CoreSettings, rows: list[tuple[str, str, str]], embeddings=None) -> None:
    """Append (target, prediction, model_version) rows, as the API does."""
    n = embedding_size(settings)
    store = ProductionData(settings.prod_data_path, n)
    for i, (target, prediction, version) in enumerate(rows):
        embedding = embeddings[i] if embeddings is not None else np.zeros(n, dtype=np.float32)
        store.append(
            ProductionRow(
                embedding=np.asarray(embedding),
                target=target,
                prediction=prediction,
                model_version=version,
                request_id=f"r{i}",
            )
        )


def test_direct_promotes_and_a_stage_strategy_puts_the_version_on_stage(
    workspace: CoreSettings,
) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    feedback(workspace, [("1", "1", "v0001")] * 3)
    second = register_challenger(workspace)
    canary = with_strategy(workspace, promotion_strategy="canary", canary_share=0.075)
    assert release(canary, registry, second, "retrain at 20 rows") == "canary"
    stage = registry.current_stage()
    assert stage["version"] == second and stage["stage"] == "canary"
    assert stage["percent"] == 7.5 and stage["from_rows"] == 3
    assert registry.current_version() == "v0001"  # the champion still serves everyone
    # Released again (a trainer that died before logging its decision): nothing moves.
    assert release(canary, registry, second, "retrain at 20 rows") == "canary"
    assert [m["stage"] for m in registry.pointer.stages_of(second)] == ["canary"]
    # A newer challenger that passes the gate takes the stage over.
    third = register_challenger(workspace)
    shadow = with_strategy(workspace, promotion_strategy="shadow", shadow_share=0.5)
    assert release(shadow, registry, third, "retrain at 40 rows") == "shadow"
    assert registry.current_stage()["version"] == third
    assert registry.pointer.stages_of(second)[-1] == {
        "stage": "rolled_back",
        "since": registry.pointer.stages_of(second)[-1]["since"],
        "reason": f"superseded by {third}",
    }
    # Direct: served at once, and the stage is closed.
    fourth = register_challenger(workspace)
    assert release(workspace, registry, fourth, "train") == "champion"
    assert registry.current_version() == fourth and registry.current_stage() is None
    assert registry.pointer.stages_of(third)[-1]["stage"] == "rolled_back"


def test_a_canary_waits_for_its_rows_then_is_promoted_when_not_worse(
    workspace: CoreSettings,
) -> None:
    settings = with_strategy(workspace, promotion_strategy="canary", canary_min_rows=4)
    registry = ModelRegistry(workspace.artifacts_dir)
    challenger = register_challenger(workspace)
    release(settings, registry, challenger, "retrain")
    feedback(settings, [("1", "1", "v0001")] * 10 + [("2", "2", challenger)] * 3)
    review = review_stage(settings, registry)
    assert review.decision == "wait" and not review.applied
    assert review.comparison.challenger_rows == 3 and review.comparison.champion_rows == 10
    assert registry.current_stage()["version"] == challenger
    feedback(settings, [("3", "3", challenger)])
    review = review_stage(settings, registry)
    assert review.decision == "promote" and review.applied
    assert registry.current_version() == challenger and registry.current_stage() is None
    history = registry.history()
    assert history[-1]["version"] == challenger and history[-1]["stage"] == "champion"
    assert "live accuracy 1.000 on 4 rows" in history[-1]["reason"]
    assert history[-2] == {**history[-2], "version": "v0001", "stage": "retired"}


def test_a_worse_canary_is_rolled_back_and_never_becomes_a_fallback(
    workspace: CoreSettings,
) -> None:
    settings = with_strategy(
        workspace, promotion_strategy="canary", canary_min_rows=5, stage_margin=0.1
    )
    registry = ModelRegistry(workspace.artifacts_dir)
    challenger = register_challenger(workspace)
    release(settings, registry, challenger, "retrain")
    # 4 of 5 right (0.8) against the champion's 10 of 10: worse by more than the margin.
    rows = [("1", "1", "v0001")] * 10 + [("2", "2", challenger)] * 4 + [("2", "7", challenger)]
    feedback(settings, rows)
    review = review_stage(settings, registry)
    assert review.decision == "roll back" and review.applied
    assert registry.current_version() == "v0001" and registry.current_stage() is None
    last = registry.history()[-1]
    assert last["version"] == challenger and last["stage"] == "rolled_back"
    assert "0.800 on 5 rows against the champion's 1.000 on 10" in last["reason"]
    # It passed the offline gate, yet it must never be served in place of a broken champion.
    assert challenger not in registry.fallbacks(None)
    assert challenger not in registry.fallbacks("v0001")


def test_a_shadow_is_scored_on_the_stored_embeddings_of_the_feedback_rows(
    workspace: CoreSettings,
) -> None:
    """The champion answered every row; the shadow's answers are its head on the rows' stored
    embeddings. One trained on flipped labels is rolled back, a sound one promoted."""
    embeddings, truth, served = served_feedback(workspace)
    embeddings, truth, served = embeddings[:60], truth[:60], served[:60]
    settings = with_strategy(
        workspace, promotion_strategy="shadow", shadow_min_rows=40, stage_margin=0.05
    )
    registry = ModelRegistry(workspace.artifacts_dir)
    bad = register_challenger(workspace, flip=True)
    release(settings, registry, bad, "retrain")
    rows = list(zip(truth.tolist(), served.tolist(), ["v0001"] * 60, strict=True))
    feedback(settings, rows[:30], embeddings[:30])
    assert review_stage(settings, registry).decision == "wait"
    feedback(settings, rows[30:], embeddings[30:])
    review = review_stage(settings, registry)
    assert review.decision == "roll back" and review.applied
    assert review.comparison.challenger_rows == 60
    assert review.comparison.challenger_accuracy < 0.2 < 0.8 < review.comparison.champion_accuracy
    # The same rows, a sound shadow: promoted.
    good = register_challenger(workspace)
    release(settings, registry, good, "retrain")  # starts from the 60 rows on disk
    feedback(settings, rows[:40], embeddings[:40])
    review = review_stage(settings, registry)
    assert review.decision == "promote", review.reason
    assert registry.current_version() == good
    expected = load_model(registry.load(good)).classifier(embeddings[:40])[0]
    assert review.comparison.challenger_accuracy == pytest.approx(np.mean(expected == truth[:40]))


def test_a_stage_move_meant_for_a_stage_that_moved_on_is_refused(workspace: CoreSettings) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    second, third = register_challenger(workspace), register_challenger(workspace)
    registry.start_stage(second, "canary", 5.0, "test", 0)
    registry.start_stage(third, "canary", 5.0, "test", 0)  # supersedes the second
    with pytest.raises(StageMovedError):
        registry.end_stage(True, "late decision about the second", version=second)
    assert registry.current_version() == "v0001" and registry.current_stage()["version"] == third
    registry.end_stage(False, "abort", version=third)
    with pytest.raises(StageMovedError):
        registry.end_stage(False, "twice", version=third)


def test_pruning_keeps_the_challenger_on_stage(workspace: CoreSettings) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    staged = register_challenger(workspace)
    registry.start_stage(staged, "shadow", 100.0, "test", 0)
    newer = [register_challenger(workspace) for _ in range(2)]
    removed = registry.prune(keep_ancestors=1, keep_others=0)
    assert staged not in removed and set(newer) <= set(removed)
    assert registry.load(staged).version == staged


def test_flipped_labels_are_all_wrong() -> None:
    labels = np.array(["0", "1", "2", "9"])
    assert not np.any(flipped(labels) == labels)
    assert flipped(labels).tolist() == ["1", "2", "9", "0"]


def test_a_retrain_that_passes_the_gate_goes_on_stage_and_the_trainer_judges_it(
    workspace: CoreSettings,
) -> None:
    from ctloop.candidate import train_candidate
    from ctloop.trainer import run_pending

    settings = with_strategy(
        workspace,
        promotion_strategy="canary",
        canary_min_rows=4,
        promotion_policy="always",
        retrain_every=1000,
    )
    registry = ModelRegistry(settings.artifacts_dir)
    candidate = train_candidate(settings, registry)
    assert candidate.promoted  # passed the gate...
    assert registry.current_version() == "v0001"  # ... and is on stage, not served to all
    assert registry.current_stage()["version"] == candidate.version
    feedback(settings, [("1", "1", "v0001")] * 10 + [("2", "2", candidate.version)] * 4)
    assert run_pending(settings) == []  # no retrain due; the stage was judged on the way
    assert registry.current_version() == candidate.version
    assert registry.history()[-1]["reason"].startswith("live canary: live accuracy 1.000")
