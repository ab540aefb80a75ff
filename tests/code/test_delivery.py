"""Progressive delivery's rules: the deterministic canary split, the live comparison, the
decisions."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from ctloop.delivery import (
    LiveComparison,
    bucket,
    compare_live,
    decide_stage,
    health_verdict,
    routed_to_challenger,
)
from ctloop.tables import Table


@pytest.mark.parametrize("percent", [5.0, 20.0, 50.0])
def test_the_canary_share_is_within_a_point_of_the_setting(percent: float) -> None:
    keys = [uuid.uuid4().hex for _ in range(20_000)]
    share = np.mean([routed_to_challenger(key, percent) for key in keys])
    assert abs(share - percent / 100) < 0.01


def test_the_split_is_the_same_in_every_worker_and_every_run() -> None:
    assert bucket("client-42") == bucket("client-42")
    assert [routed_to_challenger(f"c{i}", 5) for i in range(50)] == [
        routed_to_challenger(f"c{i}", 5) for i in range(50)
    ]
    # Nothing is random: the value is fixed by the key alone (blake2b).
    assert bucket("client-42") == 5024
    assert not any(routed_to_challenger(f"c{i}", 0) for i in range(1000))
    assert all(routed_to_challenger(f"c{i}", 100) for i in range(1000))


def rows(targets, predictions, versions) -> Table:
    n = len(targets)
    return Table(
        embeddings=np.zeros((n, 2), dtype=np.float32),
        targets=np.array(targets),
        columns={
            "target": np.array(targets),
            "prediction": np.array(predictions),
            "model_version": np.array(versions),
        },
    )


def test_a_canary_is_compared_on_the_rows_each_version_answered() -> None:
    table = rows(
        ["1", "2", "3", "4", "5", "6"],
        ["1", "2", "0", "4", "5", "0"],
        ["v2", "v2", "v2", "v1", "v1", "v1"],
    )
    live = compare_live({"version": "v2", "stage": "canary"}, "v1", table)
    assert (live.challenger_rows, live.champion_rows) == (3, 3)
    assert live.challenger_accuracy == pytest.approx(2 / 3)
    assert live.champion_accuracy == pytest.approx(2 / 3)


def test_a_shadow_is_compared_on_the_same_rows_as_the_champion() -> None:
    table = rows(["1", "2", "3", "4"], ["1", "0", "0", "4"], ["v1"] * 4)
    live = compare_live(
        {"version": "v2", "stage": "shadow"}, "v1", table, np.array(["1", "2", "3", "0"])
    )
    assert live.challenger_rows == 4
    assert (live.champion_accuracy, live.challenger_accuracy) == (0.5, 0.75)


def comparison(challenger: float, champion: float, rows: int = 100) -> LiveComparison:
    return LiveComparison("canary", "v2", "v1", rows, 900, challenger, champion)


@pytest.mark.parametrize(
    ("live", "decision"),
    [
        (comparison(0.90, 0.95, rows=10), "wait"),
        (comparison(0.95, 0.95), "promote"),
        (comparison(0.94, 0.95), "promote"),  # within the margin
        (comparison(0.90, 0.95), "roll back"),
    ],
)
def test_decisions(live: LiveComparison, decision: str) -> None:
    assert decide_stage(live, min_rows=50, margin=0.02)[0] == decision


def test_health_rolls_a_canary_back_on_errors_or_latency() -> None:
    good = {"requests": 1000, "errors": 1, "p99_seconds": 0.010}
    assert health_verdict(dict(good), good, 0.01, 1.5, 50) is None
    failing = {"requests": 100, "errors": 10, "p99_seconds": 0.010}
    assert "error ratio" in health_verdict(failing, good, 0.01, 1.5, 50)
    slow = {"requests": 100, "errors": 0, "p99_seconds": 0.030}
    assert "p99 latency" in health_verdict(slow, good, 0.01, 1.5, 50)
    too_few = {"requests": 10, "errors": 5, "p99_seconds": 0.5}
    assert health_verdict(too_few, good, 0.01, 1.5, 50) is None
