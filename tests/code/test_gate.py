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
