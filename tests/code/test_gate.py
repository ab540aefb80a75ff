"""The champion/challenger rule and the gate set."""

from __future__ import annotations

import numpy as np
import pytest

from ctloop.gate import GateSet, decide, gate_score


def score(value: float) -> dict:
    return {"score": value}


@pytest.mark.parametrize(
    ("champion", "challenger", "policy", "tolerance", "decision"),
    [
        (None, 0.5, "gate", 0.0, "promoted"),  # nothing comparable is served
        (0.90, 0.90, "gate", 0.0, "promoted"),  # not worse
        (0.90, 0.91, "gate", 0.0, "promoted"),
        (0.90, 0.89, "gate", 0.0, "rejected"),
        (0.90, 0.89, "gate", 0.02, "promoted"),  # within the tolerance
        (0.90, 0.87, "gate", 0.02, "rejected"),
        (0.90, 0.10, "always", 0.0, "promoted"),  # the workshop's behaviour
    ],
)
def test_decide(champion, challenger, policy, tolerance, decision) -> None:
    result, reason = decide(
        None if champion is None else score(champion), score(challenger), policy, tolerance
    )
    assert result == decision
    assert reason


def test_the_gate_score_is_the_mean_of_each_part() -> None:
    gate = GateSet(
        embeddings=np.zeros((6, 2)),
        targets=np.array(["a", "a", "b", "b", "a", "b"]),
        is_prod=np.array([False, False, False, False, True, True]),
    )
    result = gate_score(np.array(["a", "a", "b", "a", "b", "b"]), gate)
    assert result["reference_accuracy"] == 0.75
    assert result["production_accuracy"] == 0.5
    assert result["score"] == pytest.approx(0.625)


def test_without_production_rows_the_score_is_the_reference_accuracy() -> None:
    gate = GateSet(np.zeros((2, 2)), np.array(["a", "b"]), np.array([False, False]))
    result = gate_score(np.array(["a", "a"]), gate)
    assert result["production_accuracy"] is None and result["score"] == 0.5


def with_recall(score: float, recall: dict[str, float]) -> dict:
    return {"score": score, "reference_class_recall": recall}


def test_a_challenger_that_loses_a_class_on_the_reference_is_rejected() -> None:
    """Poisoned feedback (3s labelled 8) raises the score on rows the sender controls; the
    held-out reference rows show the lost class."""
    champion = with_recall(0.95, {"3": 0.97, "8": 0.96})
    poisoned = with_recall(0.97, {"3": 0.40, "8": 0.97})
    decision, reason = decide(champion, poisoned, "gate", 0.0, class_tolerance=0.1)
    assert decision == "rejected"
    assert "class 3 (0.970 -> 0.400)" in reason and "GATE_CLASS_TOLERANCE" in reason


def test_a_small_loss_on_one_class_within_the_tolerance_passes() -> None:
    champion = with_recall(0.95, {"3": 0.97, "8": 0.96})
    challenger = with_recall(0.96, {"3": 0.90, "8": 0.99})
    assert decide(champion, challenger, "gate", 0.0, class_tolerance=0.1)[0] == "promoted"
    assert decide(champion, challenger, "gate", 0.0, class_tolerance=0.05)[0] == "rejected"


def test_the_gate_score_carries_the_recall_of_each_reference_class() -> None:
    gate = GateSet(
        embeddings=np.zeros((5, 2)),
        targets=np.array(["a", "a", "b", "b", "b"]),
        is_prod=np.array([False, False, False, False, True]),
    )
    result = gate_score(np.array(["a", "b", "b", "b", "a"]), gate)
    # The production row (a wrong "b") does not count in the reference recall.
    assert result["reference_class_recall"] == {"a": 0.5, "b": 1.0}


def test_the_class_floor_stops_a_slow_loss_within_each_steps_tolerance() -> None:
    """Each step loses less than the tolerance against the last champion; the floor, the first
    model's recall, catches the sum."""
    floor = {"3": 0.97}
    champion = with_recall(0.95, {"3": 0.90})  # already down 0.07 since the first model
    challenger = with_recall(0.96, {"3": 0.84})  # another 0.06: within 0.1 of the champion
    assert decide(champion, challenger, "gate", 0.0, 0.1)[0] == "promoted"
    decision, reason = decide(champion, challenger, "gate", 0.0, 0.1, class_floor=floor)
    assert decision == "rejected" and "class 3 (0.970 -> 0.840)" in reason


def with_reference(score: float, reference: float) -> dict:
    return {"score": score, "reference_accuracy": reference}


def test_a_challenger_that_trades_reference_rows_for_production_rows_is_rejected() -> None:
    """A higher mean score bought with clean digits: the reference part must hold on its own."""
    champion = with_reference(0.95, 0.990)
    challenger = with_reference(0.97, 0.983)  # +0.02 on production, two reference rows lost
    assert decide(champion, challenger, "gate", 0.0)[0] == "promoted"  # the mean alone
    decision, reason = decide(champion, challenger, "gate", 0.0, reference_tolerance=0.0)
    assert decision == "rejected"
    assert "(0.9900 -> 0.9830)" in reason and "GATE_REFERENCE_TOLERANCE=0" in reason
    assert decide(champion, challenger, "gate", 0.0, reference_tolerance=0.01)[0] == "promoted"


def test_the_reference_floor_stops_a_chain_of_small_losses() -> None:
    """Each step within the tolerance of the last champion; the first model's accuracy, carried
    as the floor, catches the sum."""
    champion = with_reference(0.95, 0.986)  # already one row below the first model's 0.990
    challenger = with_reference(0.96, 0.983)  # one more: within 0.004 of the champion
    assert decide(champion, challenger, "gate", 0.0, reference_tolerance=0.004)[0] == "promoted"
    decision, reason = decide(
        champion, challenger, "gate", 0.0, reference_tolerance=0.004, reference_floor=0.990
    )
    assert decision == "rejected" and "(0.9900 -> 0.9830)" in reason
